"""Privacy: the scope of what zos derives, quarantine, and verified forget / erase (docs/privacy.md#forget-and-erase)."""

from zos_cli.privacy.purge import PurgeReport, erase_user, forget_dm
from zos_cli.privacy.quarantine import (
    apply_gate_change,
    lift_dm_quarantine,
    quarantine_dm_insights,
)
from zos_cli.privacy.scope import combine_scopes, scope_of_sources

__all__ = [
    "PurgeReport",
    "apply_gate_change",
    "combine_scopes",
    "erase_user",
    "forget_dm",
    "lift_dm_quarantine",
    "quarantine_dm_insights",
    "scope_of_sources",
]
