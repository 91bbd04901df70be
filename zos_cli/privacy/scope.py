"""Every insight carries the widest scope of its provenance: public, dm, or derived.

public + public = public; dm alone = dm; dm mixed with public, or anything derived = derived.
Scope is transitive because an insight made from insights takes their stored scope, which
already covers their own provenance.
"""

from __future__ import annotations

from collections.abc import Iterable

import sqlite_utils

PUBLIC, DM, DERIVED = "public", "dm", "derived"


def combine_scopes(scopes: Iterable[str]) -> str:
    found = set(scopes)
    if DERIVED in found or (DM in found and PUBLIC in found):
        return DERIVED
    if DM in found:
        return DM
    return PUBLIC  # no sources at all is public


def scope_of_sources(
    db: sqlite_utils.Database, message_ids: Iterable[str], insight_ids: Iterable[str]
) -> str:
    """The scope an insight made from these messages and prior insights must carry."""
    scopes: set[str] = set()
    for table, column, ids in (
        ("messages", "visibility_scope", list(message_ids)),
        ("insights", "sources_scope_max", list(insight_ids)),
    ):
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            scopes.update(
                r[0]
                for r in db.execute(
                    f"SELECT DISTINCT {column} FROM {table} WHERE id IN ({marks})", chunk
                )
            )
    return combine_scopes(scopes)
