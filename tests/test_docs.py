"""The documentation stays true to the repository.

(a) every package under zos_cli/ is in docs/architecture.md's code map;
(b) every `docs/<page>.md#anchor` cited in code, tests or docs, and every relative markdown
    link with an anchor in README.md, docs/ and benchmarks/README.md, names a heading that
    exists (GitHub-style slug);
(c) nothing cites the design brief or the formats note that live outside the repository;
(d) every command, subcommand and option has help text;
(e) the README is at most README_MAX_LINES lines and has a table of contents.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest
import typer.main

from zos_cli.cli import app

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = ROOT / "README.md"
README_MAX_LINES = 480  # (450 before issue 20 added names, nightly, cards, subjects and browse)

# Folders that are not the project's own text.
SKIP_DIRS = {".git", ".venv", ".venv-latest", ".venv-lock", "dist", "build", "data",
             "__pycache__", ".pytest_cache", ".hypothesis", ".mypy_cache", ".ruff_cache"}
TEXT_SUFFIXES = {".py", ".md", ".sql", ".toml", ".txt", ".j2", ".cfg", ".ini", ".yml",
                 ".yaml", ".json", ""}


def _files(*roots: Path, suffixes=TEXT_SUFFIXES):
    for root in roots:
        if root.is_file():
            yield root
            continue
        for path in sorted(root.rglob("*")):
            if any(part in SKIP_DIRS or part.endswith(".egg-info")
                   for part in path.relative_to(ROOT).parts):
                continue
            if path.is_file() and path.suffix in suffixes and path.stat().st_size < 2_000_000:
                yield path


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")


# ---------------------------------------------------------------- headings and slugs
def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, inline markup and punctuation dropped
    (letters, digits, spaces, hyphens and underscores kept), spaces become hyphens."""
    text = re.sub(r"`([^`]*)`", r"\1", heading.strip())
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)   # [text](link) → text
    text = text.lower()
    kept = []
    for ch in text:
        if ch in " -_" or unicodedata.category(ch)[0] in ("L", "N"):
            kept.append(ch)
    return "".join(kept).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The anchors of a markdown file's headings (outside fenced code), with GitHub's -1, -2
    suffixes for repeated headings."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    fenced = False
    for line in _read(path).splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        m = None if fenced else re.match(r"^(#{1,6})\s+(.*?)\s*#*\s*$", line)
        if m:
            base = slug(m.group(2))
            n = seen.get(base, 0)
            seen[base] = n + 1
            found.add(base if n == 0 else f"{base}-{n}")
    return found


def test_slug_is_githubs():
    assert slug("Database: init-db, migrate, status") == "database-init-db-migrate-status"
    assert slug("`zos.toml`") == "zostoml"
    assert slug("Poll cost, roles and DMs") == "poll-cost-roles-and-dms"
    assert slug("The data's way through the code") == "the-datas-way-through-the-code"


# ---------------------------------------------------------------- (a) the code map
def _packages() -> list[str]:
    pkg = ROOT / "zos_cli"
    return sorted(str(p.parent.relative_to(ROOT)) for p in pkg.rglob("__init__.py")
                  if "__pycache__" not in p.parts and p.parent != pkg)


def _code_map() -> str:
    text = _read(DOCS / "architecture.md")
    start = text.index("## Code map")
    end = text.find("\n## ", start + 1)
    return text[start:end if end != -1 else None]


@pytest.mark.parametrize("package", _packages())
def test_every_package_is_in_the_code_map(package):
    assert f"`{package}`" in _code_map(), (
        f"{package} has an __init__.py but is not in the code map of docs/architecture.md: "
        "add a row saying what it owns")


# ---------------------------------------------------------------- (b) anchors exist
DOC_CITATION = re.compile(r"docs/([A-Za-z0-9_\-]+)\.md#([A-Za-z0-9_\-]+)")
MD_LINK = re.compile(r"\]\(([^)\s]*#[^)\s]+)\)")


def _citations():
    """(where, page path, anchor) for every docs/<page>.md#anchor anywhere, and every
    relative markdown link with an anchor in the markdown files."""
    found = []
    for path in _files(ROOT / "zos_cli", ROOT / "tests", ROOT / "benchmarks", ROOT / "examples",
                       ROOT / "schema", DOCS, README):
        if path == Path(__file__).resolve():
            continue
        for n, line in enumerate(_read(path).splitlines(), 1):
            for m in DOC_CITATION.finditer(line):
                found.append((f"{path.relative_to(ROOT)}:{n}", DOCS / f"{m.group(1)}.md",
                              m.group(2)))
            if path.suffix == ".md":
                for m in MD_LINK.finditer(line):
                    target, _, anchor = m.group(1).partition("#")
                    if re.match(r"^[a-z]+:", target):       # http:, https:, mailto:
                        continue
                    page = (path.parent / target).resolve() if target else path
                    found.append((f"{path.relative_to(ROOT)}:{n}", page, anchor))
    return found


def test_citations_are_found():
    assert len(_citations()) > 50  # the scan itself works


def test_every_cited_anchor_exists():
    missing = []
    cache: dict[Path, set[str]] = {}
    for where, page, anchor in _citations():
        if not page.exists():
            missing.append(f"{where}: {page.relative_to(ROOT)} does not exist")
            continue
        if page.suffix != ".md":
            continue
        if page not in cache:
            cache[page] = anchors(page)
        if anchor not in cache[page]:
            missing.append(f"{where}: no heading for #{anchor} in {page.relative_to(ROOT)}")
    assert not missing, "\n".join(missing)


# ---------------------------------------------------------------- (c) no outside documents
# Spelled in pieces so that this file does not match itself.
OUTSIDE = re.compile("DESIGN" + r"(\.md|\s*§)" + "|" + "FORMATS" + r"\.md")


def test_nothing_cites_documents_outside_the_repository():
    found = []
    for path in _files(ROOT):
        if path == Path(__file__).resolve():
            continue
        rel = str(path.relative_to(ROOT))
        for n, line in enumerate(_read(path).splitlines(), 1):
            if OUTSIDE.search(line):
                found.append(f"{rel}:{n}: {line.strip()}")
    assert not found, ("cite the repository's own docs (docs/<page>.md#anchor) instead:\n"
                       + "\n".join(found))


# ---------------------------------------------------------------- (d) help text
def _commands():
    def walk(cmd, path):
        yield " ".join(path), cmd
        if hasattr(cmd, "commands"):  # a group (Typer hands back Click's objects)
            for name, sub in sorted(cmd.commands.items()):
                yield from walk(sub, [*path, name])
    return list(walk(typer.main.get_command(app), ["zos"]))


@pytest.mark.parametrize("name,command", _commands(), ids=[n for n, _ in _commands()])
def test_every_command_and_option_has_help(name, command):
    assert (command.help or "").strip(), f"`{name}` has no help text"
    for param in command.params:
        if param.param_type_name == "option":
            assert (param.help or "").strip(), f"`{name} {param.opts[0]}` has no help text"


# ---------------------------------------------------------------- (e) the README
def test_readme_is_short_and_has_a_table_of_contents():
    text = _read(README)
    lines = text.splitlines()
    assert len(lines) <= README_MAX_LINES, (
        f"README.md has {len(lines)} lines (at most {README_MAX_LINES}): move depth into docs/")
    toc = re.search(r"^## (Table of )?[Cc]ontents\s*$\n+((?:- \[.*\]\(#.*\)\s*\n)+)", text, re.M)
    assert toc, "README.md needs a '## Contents' list of links to its sections"
    listed = set(re.findall(r"\]\(#([^)]+)\)", toc.group(2)))
    prose = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)   # (a heading in an example is not one)
    sections = ({slug(h) for h in re.findall(r"^## (.*)$", prose, re.M)}
                - {slug(toc.group(0).splitlines()[0][3:])})
    assert sections <= listed, f"sections missing from the contents: {sorted(sections - listed)}"
