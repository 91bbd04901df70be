"""Startup: what a command that calls no model imports, and the two startup shortcuts of
zos_cli.cli (deferred typer coercion, commands built when looked up) giving what typer gives.

The timings themselves are a benchmark (benchmarks/bench_startup.py), not a test."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import typer.main

from zos_cli import cli_coercion
from zos_cli.cli import COMMAND_MODULES, app, build_commands

_PROBE = """
import json, sys
from zos_cli.cli import main
try:
    main()
except SystemExit:
    pass
with open({out!r}, "w") as out:
    json.dump(sorted({{m.split(".")[0] for m in sys.modules}}), out)
"""


def _imported(tmp_path, db_path, *args: str, env: dict | None = None) -> set[str]:
    """The top-level packages imported by one `zos` run (in a fresh interpreter)."""
    out = tmp_path / "modules.json"
    code = _PROBE.format(out=str(out))
    full_env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", **(env or {})}
    for name in ("ZOS_CONFIG", "ZOS_MODEL"):
        full_env.pop(name, None)
    done = subprocess.run([sys.executable, "-c", code, "--db", str(db_path), *args],
                          cwd=tmp_path, env=full_env, capture_output=True, text=True, timeout=60)
    assert out.exists(), done.stderr
    return set(json.loads(out.read_text()))


# Every command that calls no model (what the startup benchmark times).
NO_MODEL = [
    "status", "status --json", "salience top", "salience show user:1", "salience ledger user:1",
    "salience budget", "salience check", "salience decay --dry-run", "insights list",
    "insights show 01HZZZZZZZZZZZZZZZZZZZZZZZ", "insights search hello", "insights runs",
    "insights calls", "insights export", "consent list", "consent status 123", "reflect --list",
    "reflect --layer user --dry-run", "ingest --history", "ingest --help", "poll --help",
    "analyze --dry-run", "self show", "self history", "insights about user:1",
    "subjects list", "subjects show kiln", "subjects merge a b --dry-run",
]


def test_an_analyze_dry_run_imports_no_http_client(tmp_path, db_path):
    """A dry run fetches nothing, so it does not pay httpx's import (~0.17 s)."""
    assert "httpx" not in _imported(tmp_path, db_path, "analyze", "--dry-run")


@pytest.mark.slow
@pytest.mark.parametrize("command", NO_MODEL)
def test_a_command_that_calls_no_model_imports_neither_litellm_nor_openai(tmp_path, db_path,
                                                                          command):
    imported = _imported(tmp_path, db_path, *command.split())
    assert "zos_cli" in imported
    assert not {"litellm", "openai"} & imported


_SERVED = """
import asyncio, json, sys
from pathlib import Path
from zos_cli.browse.serve import BrowseOptions, build
ds = build(Path({db!r}), BrowseOptions())
async def pages():
    for path in ("/", "/zos/top_salience", "/zos/search_insights?q=x", "/-/zos/topic/user:1"):
        await ds.client.get(path)
asyncio.run(pages())
with open({out!r}, "w") as out:
    json.dump(sorted({{m.split(".")[0] for m in sys.modules}}), out)
"""


def test_browse_imports_neither_litellm_nor_openai(tmp_path, db_path):
    """`zos browse` (up to its first check) and the app it serves, answering pages."""
    imported = _imported(tmp_path, db_path, "browse", "--scope", "none")
    assert "datasette" in imported and not {"litellm", "openai"} & imported
    out = tmp_path / "served.json"
    done = subprocess.run([sys.executable, "-c", _SERVED.format(db=str(db_path), out=str(out))],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"})
    assert done.returncode == 0, done.stderr
    served = set(json.loads(out.read_text()))
    assert {"datasette", "zos_cli"} <= served
    assert not {"litellm", "openai"} & served


@pytest.mark.parametrize("command", ["status --json", "salience top --json",
                                     "insights list --json", "consent list --json",
                                     "insights about @nobody --json",
                                     "subjects list --json"])
def test_a_json_listing_imports_no_pydantic_rich_or_jinja2(tmp_path, db_path, command):
    imported = _imported(tmp_path, db_path, *command.split())
    assert not {"litellm", "openai", "rich", "jinja2"} & imported
    if cli_coercion.installed():  # (typer's internals as expected: see cli_coercion)
        assert "pydantic" not in imported


def _walk(command, path=()):
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _walk(sub, path + (name,))


def _every_parameter():
    for path, command in _walk(typer.main.get_command(app)):
        for param in command.params:
            if hasattr(param, "type_descriptor"):
                yield " ".join(path) or "zos", command, param


def _samples(param) -> list:
    values = [None, "abc", "7", "-1", 7, 0, -1, 2**40, 1.5, float("nan"), True, (), ("a",)]
    default = param.default
    if default is not None and not callable(default):
        values.append(default)
    return values


def _outcome(runtime, value, param, ctx):
    try:
        return "value", runtime.coerce(value, param=param, ctx=ctx)
    except Exception as exc:  # noqa: BLE001 - the outcome compared is the error too
        return "error", type(exc).__name__, str(exc)


def _same(a, b) -> bool:
    if a[0] == "value" and b[0] == "value":
        x, y = a[1], b[1]
        return type(x) is type(y) and (x == y or (x != x and y != y))
    return a == b


def test_deferred_coercion_gives_what_typer_gives_for_every_parameter():
    from typer import _click
    from typer._coercion import build_runtime_param

    checked = 0
    for where, command, param in _every_parameter():
        ctx = _click.Context(command)
        deferred = cli_coercion._Deferred(param.type_descriptor, build_runtime_param)
        for value in _samples(param):
            typer_gives = _outcome(build_runtime_param(param.type_descriptor), value, param, ctx)
            assert _same(_outcome(deferred, value, param, ctx), typer_gives), (
                where, param.name, value)
            checked += 1
    assert checked > 500


def test_an_option_left_unset_or_a_default_needs_no_pydantic():
    from typer import _click

    if not cli_coercion.installed():
        pytest.skip("typer's internals differ: coercion is typer's own")
    for _where, command, param in _every_parameter():
        ctx = _click.Context(command)
        deferred = cli_coercion._Deferred(param.type_descriptor, _no_build)
        deferred.coerce(None, param, ctx)
        flag = param.type_descriptor.annotation is bool  # (typer itself skips a flag's)
        if param.default is not None and not callable(param.default) and not flag \
                and not (param.multiple or param.nargs != 1):
            deferred.coerce(param.default, param, ctx)


def _no_build(descriptor):
    raise AssertionError(f"typer's coercion was built for {descriptor}")


def test_the_lazy_root_lists_exactly_the_commands_the_modules_define():
    modules = sorted(set(COMMAND_MODULES.values()))
    defined = {}
    for module in modules:
        for name in build_commands(module):
            defined[name] = module
    assert defined == COMMAND_MODULES
    from pathlib import Path

    import zos_cli.commands

    import importlib

    # A module under commands/ that registers something (`register` or `app`) must be known
    # to the root; one that registers nothing (api_jobs: what poll and backfill share;
    # topic_options: what the commands that take a topic share) is not.
    files = {p.stem for p in Path(zos_cli.commands.__file__).parent.glob("*.py")} - {"__init__"}
    registering = {f for f in files
                   if any(hasattr(importlib.import_module(f"zos_cli.commands.{f}"), attr)
                          for attr in ("register", "app"))}
    assert registering == set(modules), "a command module the root does not know"
    assert files - registering == {"api_jobs", "topic_options"}


def test_looking_up_one_command_builds_only_its_module():
    from zos_cli.cli import LazyCommands

    commands = LazyCommands(COMMAND_MODULES)
    assert list(commands) == list(COMMAND_MODULES) and "salience" in commands
    assert commands["salience"].name == "salience"
    assert set(commands._built) == {"salience"}
    assert commands["status"].name == "status"  # builds database's three commands
    assert set(commands._built) == {"salience", "init-db", "migrate", "status"}
    with pytest.raises(KeyError):
        commands["nosuch"]
