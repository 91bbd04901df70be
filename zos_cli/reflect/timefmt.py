"""Human-relative times against a run's as-of time ("3 days ago"), and token estimates."""

from __future__ import annotations

import math
from datetime import datetime

from zos_cli.timeutil import parse_time

# Prompts are budgeted in tokens without a tokenizer: about 4 characters per token for
# English chat, which is what OpenAI and Anthropic tokenizers average. The budget is a
# ceiling, so a small overestimate is harmless.
CHARS_PER_TOKEN = 4


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN) if text else 0


def _units(seconds: float) -> str:
    minutes = seconds / 60
    hours = minutes / 60
    days = hours / 24
    if seconds < 60:
        return ""
    if minutes < 60:
        n = int(minutes)
        return f"{n} minute{'s' if n != 1 else ''}"
    if hours < 24:
        n = int(hours)
        return f"{n} hour{'s' if n != 1 else ''}"
    if days < 14:
        n = int(days)
        return f"{n} day{'s' if n != 1 else ''}"
    if days < 60:
        n = int(days // 7)
        return f"{n} weeks"
    if days < 730:
        n = int(days // 30.44)
        return f"{n} months"
    n = int(days // 365.25)
    return f"{n} years"


def relative(when: str | datetime, as_of: str | datetime) -> str:
    """`when` relative to `as_of`: "just now", "5 minutes ago", "yesterday", "in 2 days"."""
    w = parse_time(when) if isinstance(when, str) else when
    a = parse_time(as_of) if isinstance(as_of, str) else as_of
    seconds = (a - w).total_seconds()
    span = _units(abs(seconds))
    if not span:
        return "just now"
    if span == "1 day":
        return "yesterday" if seconds > 0 else "tomorrow"
    return f"{span} ago" if seconds > 0 else f"in {span}"
