"""What a `zos analyze` run reports: its totals and the summary `zos analyze --json` prints."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Totals:
    media_analysed: int = 0   # attachment rows that ended `ok` in this run
    links_analysed: int = 0   # link rows that ended `ok` (one fetch may complete several)
    skipped: Counter = field(default_factory=Counter)  # status or skip reason → rows
    tokens_used: int = 0
    cost_usd: float = 0.0
    errors: list[dict] = field(default_factory=list)  # {item, error}

    def add_cost(self, tokens: int, cost_usd: float) -> None:
        self.tokens_used += tokens
        self.cost_usd += cost_usd


def summary(checked, totals: Totals, as_of: str, *, remaining: int, dry_run: bool = False,
            **extra) -> dict:
    return {
        "media_analysed": totals.media_analysed,
        "links_analysed": totals.links_analysed,
        "skipped": dict(sorted(totals.skipped.items())),
        "tokens_used": totals.tokens_used,
        "cost_usd": round(totals.cost_usd, 6),
        "errors": totals.errors,
        "remaining": remaining,
        "as_of": as_of,
        "vision_model": checked.vision.label if checked else None,
        "summary_model": checked.summary.label if checked else None,
        "dry_run": dry_run,
        **extra,
    }


def empty_summary() -> dict:
    """The summary of a run that never started (what a failure before it reports)."""
    return summary(None, Totals(), None, remaining=0)
