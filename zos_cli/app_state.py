"""What the root options resolve to, handed to every command through the Typer context."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import sqlite_utils
import typer

from zos_cli import db as database
from zos_cli.config import Config, load_config, resolve_config_path, resolve_db_path


@dataclass
class AppState:
    db_flag: str | None = None
    config_flag: str | None = None
    quiet: bool = False
    verbose: bool = False
    _config: Config | None = field(default=None, repr=False)

    @property
    def config(self) -> Config:
        if self._config is None:
            path, explicit = resolve_config_path(self.config_flag)
            self._config = load_config(path, explicit=explicit)
        return self._config

    @property
    def config_path(self) -> Path | None:
        return resolve_config_path(self.config_flag)[0]

    @property
    def db_path(self) -> Path:
        return resolve_db_path(self.db_flag, self.config)

    def open_db(self) -> sqlite_utils.Database:
        """The migrated database (66 when missing, 78 when pending/newer)."""
        return database.open_database(self.db_path)


def state(ctx: typer.Context) -> AppState:
    root = ctx.find_root()
    if root.obj is None:
        root.obj = AppState()
    return root.obj
