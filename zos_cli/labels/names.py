"""How a person, a channel or a server is named wherever zos shows one: in a reflection prompt
(reflect/people.py) and in the labels a person reads (labels/labeler.py). One rule for
both, so a name never reads one way in a prompt and another in a table."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

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


# ---------------------------------------------------------------- names in message text
_USER_MENTION = re.compile(r"<@!?(\d+)>")
_ROLE_MENTION = re.compile(r"<@&(\d+)>")
_CHANNEL_MENTION = re.compile(r"<#(\d+)>")
_CUSTOM_EMOJI = re.compile(r"<a?:([A-Za-z0-9_~]+):(\d+)>")


def markup_to_names(text: str, *, user: Callable[[str], str], role: Callable[[str], str],
                    channel: Callable[[str], str]) -> str:
    """Discord markup in a message as names: user and role mentions (`@` + the name the
    callback gives the id), channel links (the callback's name) and custom emoji (`:name:`)."""
    text = _USER_MENTION.sub(lambda m: "@" + user(m.group(1)), text)
    text = _ROLE_MENTION.sub(lambda m: "@" + role(m.group(1)), text)
    text = _CHANNEL_MENTION.sub(lambda m: channel(m.group(1)), text)
    return _CUSTOM_EMOJI.sub(lambda m: f":{m.group(1)}:", text)


def mentioned_names(db, message_id: str, server_id: str) -> Iterator[tuple[str, list[str]]]:
    """(user id, their names longest first) for each person a message mentions. Exports write
    a mention as `@Name`, not as markup: hiding a person in a message's text means replacing
    each of their names (longest first: "@Jun Park" before "@Jun")."""
    for (user_id,) in db.execute("SELECT user_id FROM mentions WHERE message_id = ?",
                                 [message_id]).fetchall():
        row = db.execute(
            "SELECT u.name, u.display_name, t.nickname FROM users u LEFT JOIN "
            "user_server_tracking t ON t.user_id = u.id AND t.server_id = ? WHERE u.id = ?",
            [server_id, user_id]).fetchone()
        yield user_id, sorted({n for n in row or () if n}, key=len, reverse=True)
