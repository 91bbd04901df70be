"""Where the database and the config file are, without importing pydantic (startup matters)."""

from __future__ import annotations

import os
from pathlib import Path

from zos_cli.errors import NoDatabase

DEFAULT_DB = "data/zos.db"
DEFAULT_CONFIG = "zos.toml"


def resolve_config_path(flag: str | None) -> tuple[Path | None, bool]:
    """(path, explicit): --config > ZOS_CONFIG > ./zos.toml when present."""
    if flag:
        return Path(flag), True
    env = os.environ.get("ZOS_CONFIG")
    if env:
        return Path(env), True
    default = Path(DEFAULT_CONFIG)
    return (default, False) if default.exists() else (None, False)


def resolve_db_path(flag: str | None, configured: str | None) -> Path:
    """--db > ZOS_DB > zos.toml `db` > ./data/zos.db."""
    return Path(flag or os.environ.get("ZOS_DB") or configured or DEFAULT_DB)


def make_folder_of(path: Path) -> None:
    """Create the folder a database (or its lock files) goes in, or say why it cannot be."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NoDatabase(f"cannot make the folder {path.parent} ({exc.strerror}): give --db a "
                         "path zos may write") from None
