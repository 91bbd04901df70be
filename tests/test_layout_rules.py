"""The layout's rules, read from the code with `ast`.

- Commands do not import each other (what two share lives in a module that registers
  nothing, such as commands/api_jobs.py).
- Library modules (everything but the commands and the CLI shell) print nothing through
  `zos_cli.output`, take no job lock and know nothing of typer or click: the command wires
  progress and warnings in through callbacks and holds the lock.
- Nothing imports click (typer is the one CLI framework).
- The observe package's private names stay inside it.
- Command modules hold no SQL: queries live in the library.
- Each stage imports only the stages the import rule of docs/architecture.md#import-rule
  allows: nothing imports a later stage.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import zos_cli

PACKAGE = Path(zos_cli.__file__).parent
CLI_SHELL = {"zos_cli.cli", "zos_cli.cli_coercion", "zos_cli.app_state", "zos_cli.output"}
LIBRARY_MAY_NOT_IMPORT = ("zos_cli.output", "zos_cli.store.locks", "typer", "click")
SQL = re.compile(r"\b(SELECT |INSERT |UPDATE |DELETE FROM)")


def _name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
TREES = {name: ast.parse(path.read_text(encoding="utf-8")) for name, path in MODULES.items()}


def _imports(name: str) -> list[tuple[str, list[str], int]]:
    """(module imported, names taken from it, line): `import a.b` gives ("a.b", []);
    `from a import b` gives ("a", ["b"]) and, when a.b is a module, ("a.b", []) too."""
    found = []
    package = name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(TREES[name]):
        if isinstance(node, ast.Import):
            found += [(alias.name, [], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names = [alias.name for alias in node.names]
            found.append((base, names, node.lineno))
            found += [(f"{base}.{n}", [], node.lineno) for n in names
                      if f"{base}.{n}" in MODULES]
    return found


def _is_command(name: str) -> bool:
    """A module of zos_cli.commands that registers a command (`register`) or a group (`app`)."""
    if not name.startswith("zos_cli.commands.") or name == "zos_cli.commands":
        return False
    top = {n.name for n in TREES[name].body if isinstance(n, ast.FunctionDef)}
    top |= {t.id for n in TREES[name].body if isinstance(n, ast.Assign)
            for t in n.targets if isinstance(t, ast.Name)}
    return "register" in top or "app" in top


def _is_library(name: str) -> bool:
    return not (name == "zos_cli.commands" or name.startswith("zos_cli.commands.")
                or name in CLI_SHELL)


COMMANDS = [n for n in MODULES if _is_command(n)]


def test_the_rules_see_the_modules():
    assert {"zos_cli.commands.ingest", "zos_cli.commands.poll", "zos_cli.commands.reflect",
            "zos_cli.commands.salience"} <= set(COMMANDS)
    assert "zos_cli.commands.api_jobs" not in COMMANDS
    assert _is_library("zos_cli.reflect.run") and not _is_library("zos_cli.commands.api_jobs")


@pytest.mark.parametrize("name", [n for n in MODULES if n.startswith("zos_cli.commands.")])
def test_no_command_module_is_imported_by_another_command_module(name):
    wrong = [f"line {line}: {module}" for module, _names, line in _imports(name)
             if module in COMMANDS and module != name]
    assert wrong == [], f"{name} imports command modules"


def test_library_modules_do_not_print_take_locks_or_use_the_cli_framework():
    wrong = []
    for name in MODULES:
        if not _is_library(name):
            continue
        for module, names, line in _imports(name):
            taken = [module] + [f"{module}.{n}" for n in names]
            for forbidden in LIBRARY_MAY_NOT_IMPORT:
                if any(t == forbidden or t.startswith(forbidden + ".") for t in taken):
                    wrong.append(f"{name} line {line}: {forbidden}")
    assert wrong == []


def test_nothing_imports_click():
    wrong = [f"{name} line {line}" for name in MODULES for module, _n, line in _imports(name)
             if module == "click" or module.startswith("click.")]
    assert wrong == []


def test_private_names_of_observe_stay_inside_it():
    wrong = []
    for name in MODULES:
        if name == "zos_cli.observe" or name.startswith("zos_cli.observe."):
            continue
        for module, names, line in _imports(name):
            if module == "zos_cli.observe" or module.startswith("zos_cli.observe."):
                wrong += [f"{name} line {line}: {module}.{n}" for n in names
                          if n.startswith("_")]
        # (and no reaching in through an attribute: observe.writer._Batch)
        for node in ast.walk(TREES[name]):
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") \
                    and not node.attr.startswith("__"):
                source = ast.unparse(node.value)
                if re.search(r"\b(observe|writer|rows|people)$", source):
                    wrong.append(f"{name} line {node.lineno}: {source}.{node.attr}")
    assert wrong == []


@pytest.mark.parametrize("name", [n for n in MODULES if n.startswith("zos_cli.commands.")])
def test_command_modules_hold_no_sql(name):
    wrong = []
    for node in ast.walk(TREES[name]):
        texts = []
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            texts = [node.value]
        elif isinstance(node, ast.JoinedStr):
            texts = [v.value for v in node.values if isinstance(v, ast.Constant)]
        wrong += [f"line {node.lineno}: {t[:60]!r}" for t in texts if SQL.search(t)]
    assert wrong == [], f"{name} holds SQL"


def test_only_observe_touches_the_writers_counts_and_caches():
    """Outside observe, the writer is read through `counts`/`counts_for` and told of a
    rollback through `forget_places`, never by reaching into its sets and dicts."""
    internals = {"by_source", "users_by_source", "channels_by_source", "channels_written",
                 "servers_written", "written_people"}
    wrong = [f"{name} line {node.lineno}: .{node.attr}"
             for name in MODULES
             if not (name == "zos_cli.observe" or name.startswith("zos_cli.observe."))
             for node in ast.walk(TREES[name])
             if isinstance(node, ast.Attribute) and node.attr in internals]
    assert wrong == []


# docs/architecture.md#import-rule, as data: the zos_cli packages each package may import
# (besides itself and the shared-vocabulary modules at the top of zos_cli).
STAGES_BELOW = {
    "store": set(),
    "privacy": {"store"},
    "labels": {"privacy", "store"},
    "sources": set(),
    "sources.discord": {"sources", "privacy", "store"},
    "analyze": {"store", "privacy", "reflect", "sources"},
    "observe": {"privacy", "store"},
    "salience": {"privacy", "store"},
    "ingest": {"sources", "sources.discord", "observe", "salience", "privacy", "store"},
    "reflect": {"salience", "labels", "privacy", "store"},
    "insights": {"labels", "store"},
    "nightly": {"salience", "analyze", "reflect", "store"},
    "browse": {"labels", "salience"},
}
SHARED_VOCABULARY = {"errors", "ids", "timeutil", "records", "events", "topics",
                     "config", "progress", "strength"}


def _package_of(module: str) -> str | None:
    """The stage package a zos_cli module belongs to; None for the shared vocabulary, the
    CLI shell and the commands (which may import any stage)."""
    parts = module.split(".")
    if len(parts) < 2 or parts[0] != "zos_cli":
        return None
    if parts[1] == "sources" and len(parts) > 2 and parts[2] == "discord":
        return "sources.discord"
    return parts[1] if parts[1] in STAGES_BELOW else None


def test_every_stage_package_has_an_import_rule():
    packages = {_package_of(n) for n in MODULES} - {None}
    directories = {p.parent.relative_to(PACKAGE).as_posix().replace("/", ".")
                   for p in PACKAGE.rglob("__init__.py")} - {".", "commands"}
    assert directories == packages == set(STAGES_BELOW)


def test_each_stage_imports_only_the_stages_below_it():
    wrong = []
    for name in MODULES:
        own = _package_of(name)
        if own is None:
            continue
        for module, _names, line in _imports(name):
            if not module.startswith("zos_cli"):
                continue
            if module == "zos_cli" or module.split(".")[1] in SHARED_VOCABULARY:
                continue
            if module in ("zos_cli.output", "zos_cli.cli", "zos_cli.app_state"):
                continue  # library modules may not import these at all: tested above
            target = _package_of(module)
            if target is None and module.startswith("zos_cli.commands"):
                wrong.append(f"{name} line {line}: {module}")
            elif target not in (None, own) and target not in STAGES_BELOW[own]:
                wrong.append(f"{name} line {line}: {module}")
    assert wrong == [], "imports against docs/architecture.md#import-rule:\n" + "\n".join(wrong)
