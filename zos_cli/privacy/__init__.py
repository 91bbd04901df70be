"""Privacy: the scope of what zos derives, quarantine, and verified forget / erase (docs/privacy.md#forget-and-erase).

The names below are loaded on first use (PEP 562), so that importing one light module of the
package — `privacy.gate` for labels, `privacy.scope` — does not load the purge and its
migrations module with it.
"""

from importlib import import_module

_HOMES = {
    "PurgeReport": "purge",
    "erase_user": "purge",
    "forget_dm": "purge",
    "apply_gate_change": "quarantine",
    "lift_dm_quarantine": "quarantine",
    "quarantine_dm_insights": "quarantine",
    "combine_scopes": "scope",
    "scope_of_sources": "scope",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(import_module(f"zos_cli.privacy.{_HOMES[name]}"), name)
    raise AttributeError(f"module 'zos_cli.privacy' has no attribute {name!r}")
