"""Shared fixtures: a migrated temporary database file, a CLI runner, a clean environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# litellm otherwise fetches a price list at import (slow, and fails offline).
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"

from typer.testing import CliRunner  # noqa: E402

from zos_cli.store import db as database
from zos_cli.store import migrations
from zos_cli.config import Config  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"

_ZOS_ENV = (
    "ZOS_DB", "ZOS_CONFIG", "ZOS_MODEL", "ZOS_DEBUG", "ZOS_DISCORD_API_BASE", "DISCORD_TOKEN",
    "OPENAI_API_KEY", "OPENAI_API_BASE", "ANTHROPIC_API_KEY",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch, tmp_path):
    """No test sees the operator's zos settings or a ./zos.toml; each runs in its own folder."""
    for name in _ZOS_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def db_path(tmp_path) -> Path:
    path = tmp_path / "zos.db"
    db = database.connect(path, create=True)
    migrations.apply(db, path)
    db.close()
    return path


@pytest.fixture
def db(db_path):
    """A migrated database on a real file, closed after the test."""
    handle = database.open_database(db_path)
    yield handle
    handle.close()


@pytest.fixture
def config() -> Config:
    return Config()


class Cli:
    """Runs the Typer app in-process (the error path lives in the root group, so exit codes and
    messages are those of the console script)."""

    def __init__(self, db_path: Path | None):
        self.db_path = db_path
        self.runner = CliRunner()

    def __call__(self, *args: str, input: str | None = None, env: dict | None = None):
        from zos_cli.cli import app

        full = ["--db", str(self.db_path), *args] if self.db_path else list(args)
        return self.runner.invoke(app, full, input=input, env=env, prog_name="zos")


@pytest.fixture
def cli(db_path) -> Cli:
    return Cli(db_path)


def run_zos(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 120,
            input: str | None = None) -> subprocess.CompletedProcess:
    """The real console entry point in a subprocess (for import checks, kill tests, locks)."""
    full_env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "zos_cli", *args],
        cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout, input=input,
    )


def run_on_a_terminal(*args: str, columns: int = 200) -> tuple[int, str]:
    """The console entry point with stdin, stdout and stderr on a real pseudo-terminal (what
    is drawn or printed only for a person at a terminal); (exit code, everything shown)."""
    import pty

    controller, terminal = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "zos_cli", *args],
                            stdin=terminal, stdout=terminal, stderr=terminal,
                            env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                                 "COLUMNS": str(columns)})
    os.close(terminal)
    seen = b""
    while True:
        try:
            chunk = os.read(controller, 4096)
        except OSError:  # the terminal closed: the process is done
            break
        if not chunk:
            break
        seen += chunk
    os.close(controller)
    return proc.wait(timeout=60), seen.decode(errors="replace")


def scan_files(db_path: Path, needle: str) -> dict[str, int]:
    """Occurrences of `needle` in the raw bytes of the database, its WAL and its shared memory
    (privacy tests: what was forgotten, or never allowed in, must not be there at all)."""
    found = {}
    for suffix in ("", "-wal", "-shm"):
        path = Path(f"{db_path}{suffix}")
        found[suffix or "db"] = path.read_bytes().count(needle.encode()) if path.exists() else 0
    return found
