"""How a person, a channel or a server is named wherever zos shows one: in a reflection prompt
(reflect/people.py) and in the labels a person reads (labels/labeler.py). One rule for
both, so a name never reads one way in a prompt and another in a table."""

from __future__ import annotations

import re

_LINE_BREAKS_AND_CONTROLS = re.compile(r"[\x00-\x1f\x7f\u0085\u2028\u2029]+")
MAX_NAME_CHARS = 64


def prompt_name(name: str | None) -> str:
    """A name as zos shows it outside quoted message text: on one line (a name holding a line
    break could end a prompt's data fence and pose as an instruction, or break a table), no
    control characters, at most 64 characters."""
    if not name:
        return ""
    flat = " ".join(_LINE_BREAKS_AND_CONTROLS.sub(" ", name).split())
    return flat if len(flat) <= MAX_NAME_CHARS else flat[:MAX_NAME_CHARS - 1] + "…"


def person_name(user_id: str, *, nickname: str | None = None, display_name: str | None = None,
                name: str | None = None, is_bot: bool = False) -> str:
    """The newest name zos knows a user by: their server nickname (None outside a server),
    else their display name, else their user name, else `user <id>`; bots say so."""
    label = prompt_name(nickname or display_name or name) or f"user {user_id}"
    return f"{label} (bot)" if is_bot else label


def alias(number: int) -> str:
    """How someone the privacy gate keeps out, or an erased user, appears: `<chat_N>`,
    numbered in order of appearance within one prompt or one listing."""
    return f"<chat_{number}>"
