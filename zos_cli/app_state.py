"""What the root options resolve to, handed to every command through the Typer context."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from zos_cli.store.paths import resolve_config_path, resolve_db_path

# Imported where used, so `zos --help` never pays for pydantic or sqlite-utils.
if TYPE_CHECKING:
    import sqlite_utils

    from zos_cli.config import Config


@dataclass
class AppState:
    db_flag: str | None = None
    config_flag: str | None = None
    quiet: bool = False
    verbose: bool = False
    _config: Any = field(default=None, repr=False)

    @property
    def config(self) -> Config:
        if self._config is None:
            from zos_cli.config import load_config

            path, explicit = resolve_config_path(self.config_flag)
            self._config = load_config(path, explicit=explicit)
        return self._config

    @property
    def config_path(self) -> Path | None:
        return resolve_config_path(self.config_flag)[0]

    @property
    def db_path(self) -> Path:
        # A config file present (or named) is always validated, so a bad one is reported by
        # every command; with none, built-in defaults apply and pydantic is not even imported.
        path, explicit = resolve_config_path(self.config_flag)
        configured = self.config.db if (explicit or path is not None) else None
        return resolve_db_path(self.db_flag, configured)

    def open_db(self) -> sqlite_utils.Database:
        """The migrated database (66 when missing, 78 when pending/newer)."""
        from zos_cli.store import db as database

        return database.open_database(self.db_path)

    @contextmanager
    def database(self) -> Iterator[sqlite_utils.Database]:
        """`with state(ctx).database() as db:` — the migrated database, closed afterwards."""
        db = self.open_db()
        try:
            yield db
        finally:
            db.close()


def state(ctx: typer.Context) -> AppState:
    root = ctx.find_root()
    if root.obj is None:
        root.obj = AppState()
    return root.obj
