"""Reflection layers: TOML files with a Jinja2 prompt template beside them.

Layers ship in `zos_cli/layers/`; a `layers/` folder in the working directory overrides a
shipped layer of the same name (its template is looked up beside the overriding file first).
A layer's hash covers its file and its template, so a run records exactly what it ran.
"""

from __future__ import annotations

import functools
import hashlib
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import jinja2
import jinja2.meta
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from zos_cli import topics
from zos_cli.errors import ConfigError, UsageProblem

SHIPPED_DIR = Path(__file__).resolve().parent.parent / "layers"
LOCAL_DIR_NAME = "layers"

# A layer targets one or more topic categories.
TOPIC_CATEGORIES = frozenset(topics.CATEGORIES)


class LayerSpec(BaseModel):
    """The TOML file, validated (unknown keys are an error naming the key)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    category: str | list[str]
    description: str
    goal: str
    max_targets: int = Field(ge=0)
    min_salience: float = Field(10.0, ge=0)
    model: str = "reflection"
    retrieval: Literal["recent", "balanced", "deep"] = "recent"
    context_tokens: int = Field(ge=200, le=1_000_000)
    insight_category: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    template: str
    # What the context is made of: the target's messages, or (synthesis) the new insights of
    # the server-scoped topics that roll up into a global target, or (the self layer) the one
    # target self:zos whatever its balance, with zos's own recent runs beside its messages, or
    # (reconcile) the topics' open conflicts: pairs of standing insights, no messages.
    source: Literal["messages", "server_insights", "self", "conflicts"] = "messages"

    @field_validator("category")
    @classmethod
    def _known_categories(cls, value: str | list[str]) -> str | list[str]:
        names = [value] if isinstance(value, str) else value
        if not names:
            raise ValueError("names no topic category")
        unknown = [n for n in names if n not in TOPIC_CATEGORIES]
        if unknown:
            raise ValueError(
                f"unknown topic category {', '.join(unknown)} "
                f"(known: {', '.join(sorted(TOPIC_CATEGORIES))})"
            )
        return value


@dataclass(frozen=True)
class Layer:
    spec: LayerSpec
    path: Path
    template_path: Path
    origin: str  # "shipped" | "local"
    hash: str
    search: tuple[Path, ...] = (SHIPPED_DIR,)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def categories(self) -> list[str]:
        c = self.spec.category
        return [c] if isinstance(c, str) else list(c)

    def render(self, **variables) -> str:
        """The prompt text for one target. Undefined variables are errors, not blanks."""
        env = _environment(self.search)
        try:
            return env.get_template(self.spec.template).render(layer=self.spec, **variables)
        except (jinja2.TemplateError, UnicodeDecodeError, RecursionError, ArithmeticError,
                LookupError, TypeError, ValueError) as exc:
            # A local template is code the operator wrote: any error it raises is its own.
            raise ConfigError(f"layer {self.name}: template {self.template_path} failed: "
                              f"{type(exc).__name__}: {exc}")

    def as_row(self) -> dict:
        return {
            "name": self.name,
            "category": ",".join(self.categories),
            "description": self.spec.description,
            "model": self.spec.model,
            "max_targets": self.spec.max_targets,
            "min_salience": self.spec.min_salience,
            "retrieval": self.spec.retrieval,
            "context_tokens": self.spec.context_tokens,
            "insight_category": self.spec.insight_category,
            "origin": self.origin,
            "path": str(self.path),
            "hash": self.hash,
        }


def _environment(search: tuple[Path, ...]) -> jinja2.Environment:
    # Markdown prompts, not HTML: no autoescape. Undefined variables fail loudly.
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader([str(d) for d in search]),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def template_closure(search: tuple[Path, ...], name: str) -> list[Path]:
    """The template and every template it extends or includes (their bytes are in the hash)."""
    env = _environment(search)
    seen: dict[str, Path] = {}
    pending = [name]
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        try:
            source, filename, _ = env.loader.get_source(env, current)
            referenced = _referenced(source)
        except (jinja2.TemplateError, UnicodeDecodeError) as exc:
            raise ConfigError(f"template {current}: {exc}")
        seen[current] = Path(filename)
        pending.extend(r for r in referenced if r)
    return [seen[n] for n in sorted(seen)]


@functools.lru_cache(maxsize=64)
def _referenced(source: str) -> tuple[str | None, ...]:
    """The templates `source` extends or includes. Parsed once per distinct source: every
    layer includes the same partial, which is otherwise parsed again for each (startup time
    of the commands that load all the layers). (A parse error is not cached: raised again.)"""
    env = _environment(())  # (parsing uses the syntax settings, never the loader)
    return tuple(jinja2.meta.find_referenced_templates(env.parse(source)))


def layer_hash(file_bytes: bytes, templates: list[bytes]) -> str:
    """sha256 over the layer file and its templates (the one it names and its partials)."""
    digest = hashlib.sha256()
    digest.update(file_bytes)
    for template in templates:
        digest.update(b"\0")
        digest.update(template)
    return digest.hexdigest()


def _describe(error: dict) -> str:
    where = ".".join(str(p) for p in error["loc"]) or "(top level)"
    if error["type"] == "extra_forbidden":
        return f"{where}: unknown setting"
    if error["type"] == "missing":
        return f"{where}: required"
    return f"{where}: {error['msg']}"


def load_layer_file(path: Path, origin: str, search: list[Path]) -> Layer:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"layer file {path}: cannot be read ({exc.strerror})")
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"layer file {path}: not valid TOML: {exc}")
    try:
        spec = LayerSpec.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(_describe(e) for e in exc.errors())
        raise ConfigError(f"layer file {path}: {problems}")
    if spec.name != path.stem:
        raise ConfigError(
            f"layer file {path}: name {spec.name!r} differs from the file name; "
            f"rename the file to {spec.name}.toml"
        )
    template = next((d / spec.template for d in search if (d / spec.template).is_file()), None)
    if template is None:
        raise ConfigError(
            f"layer file {path}: template {spec.template} not found beside it "
            f"(looked in {', '.join(str(d) for d in search)})"
        )
    closure = template_closure(tuple(search), spec.template)
    digest = layer_hash(raw, [p.read_bytes() for p in closure])
    return Layer(spec, path, template, origin, digest, tuple(search))


def load_layers(local_dir: Path | None = None) -> dict[str, Layer]:
    """Every layer by name: shipped ones, overridden by `./layers/<name>.toml`."""
    local_dir = Path(LOCAL_DIR_NAME) if local_dir is None else local_dir
    layers: dict[str, Layer] = {}
    for path in sorted(SHIPPED_DIR.glob("*.toml")):
        layers[path.stem] = load_layer_file(path, "shipped", [SHIPPED_DIR])
    if local_dir.is_dir():
        for path in sorted(local_dir.glob("*.toml")):
            layers[path.stem] = load_layer_file(path, "local", [local_dir, SHIPPED_DIR])
    return layers


def in_order(layers: dict[str, Layer], order: list[str]) -> list[Layer]:
    """The layers in `order` (the night's, `[nightly] layers`: the order in which they build
    on each other), then those the night does not run, by name."""
    first = [layers[name] for name in order if name in layers]
    return first + [layers[name] for name in sorted(layers) if name not in order]


def layer_names(local_dir: Path | None = None) -> list[str]:
    local_dir = Path(LOCAL_DIR_NAME) if local_dir is None else local_dir
    names = {p.stem for p in SHIPPED_DIR.glob("*.toml")}
    if local_dir.is_dir():
        names |= {p.stem for p in local_dir.glob("*.toml")}
    return sorted(names)


def get_layer(name: str, local_dir: Path | None = None) -> Layer:
    """One layer (only its own file is read, so a broken neighbour does not stop it)."""
    local_dir = Path(LOCAL_DIR_NAME) if local_dir is None else local_dir
    local = local_dir / f"{name}.toml"
    if local.is_file():
        return load_layer_file(local, "local", [local_dir, SHIPPED_DIR])
    shipped = SHIPPED_DIR / f"{name}.toml"
    if shipped.is_file():
        return load_layer_file(shipped, "shipped", [SHIPPED_DIR])
    raise UsageProblem(
        f"no layer named {name!r}: choose one of {', '.join(layer_names(local_dir))} "
        "(see `zos reflect --list`)"
    )
