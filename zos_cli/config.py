"""Configuration: `zos.toml` read with tomllib into pydantic models holding every default.

Precedence everywhere: command-line flag > environment variable > zos.toml > built-in default.
No config file is required. An unknown key or a bad value is a ConfigError naming the key.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from zos_cli import __version__
from zos_cli.errors import ConfigError
from zos_cli.ids import is_discord_id
from zos_cli.strength import DEFAULT_HALF_LIFE_DAYS, HALF_LIFE_DAYS

DEFAULT_API_BASE = "https://discord.com/api/v10"


class Strict(BaseModel):
    # strict: `concurrency = true` or `message = "2"` is a bad value (exit 78), not a 1 or a 2.0
    # defer_build: pydantic builds a model's validator when it first validates (a config
    # file read, an assignment), not at import; with no config file the defaults are
    # constructed (see _defaults) and no validator is built at all (startup time).
    model_config = ConfigDict(extra="forbid", validate_assignment=True, strict=True,
                              defer_build=True)


def _defaults(model: type[Strict]) -> Strict:
    """`model()` without validating: the built-in defaults, which are valid by construction
    (tests/test_config.py validates them), as pydantic would build them with no input."""
    return model.model_construct()


class Weights(Strict):
    message: float = Field(1.0, ge=0)
    media_multiplier: float = Field(1.2, ge=0, description="× for a message with media or links")
    reply: float = Field(1.5, ge=0)
    mention: float = Field(2.0, ge=0)
    emoji: float = Field(0.5, ge=0)
    thread_create: float = Field(2.0, ge=0)
    reaction: float = Field(0.5, ge=0)
    self_mention: float = Field(5.0, ge=0)
    dm: float = Field(1.5, ge=0)
    subject_mention: float = Field(2.0, ge=0)
    self_run: float = Field(1.0, ge=0)


class Caps(Strict):
    server_user: float = Field(100.0, gt=0)
    channel: float = Field(150.0, gt=0)
    thread: float = Field(50.0, gt=0)
    dyad: float = Field(80.0, gt=0)
    user_in_channel: float = Field(40.0, gt=0)
    dyad_in_channel: float = Field(30.0, gt=0)
    subject: float = Field(60.0, gt=0)
    role: float = Field(80.0, gt=0)
    emoji: float = Field(60.0, gt=0)
    server_self: float = Field(100.0, gt=0)
    global_user: float = Field(150.0, gt=0)
    global_dyad: float = Field(100.0, gt=0)
    global_self: float = Field(200.0, gt=0)


class Budget(Strict):
    """Shares of the nightly target budget per budget group (they must add up to 1)."""

    social: float = Field(0.30, ge=0, le=1)
    global_: float = Field(0.15, ge=0, le=1, alias="global")
    spaces: float = Field(0.30, ge=0, le=1)
    semantic: float = Field(0.15, ge=0, le=1)
    culture: float = Field(0.10, ge=0, le=1)

    model_config = ConfigDict(extra="forbid", populate_by_name=True, validate_assignment=True,
                              strict=True, defer_build=True)

    @model_validator(mode="after")
    def _shares_make_the_whole(self) -> "Budget":
        total = sum(self.shares().values())
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"the shares add up to {total:g}: they must add up to 1")
        return self

    def shares(self) -> dict[str, float]:
        return {
            "social": self.social,
            "global": self.global_,
            "spaces": self.spaces,
            "semantic": self.semantic,
            "culture": self.culture,
        }


class Salience(Strict):
    weights: Weights = _defaults(Weights)
    caps: Caps = _defaults(Caps)
    budget: Budget = _defaults(Budget)
    propagation_factor: float = Field(0.3, ge=0, le=1)
    spillover_factor: float = Field(0.5, ge=0, le=1)
    warm_threshold: float = Field(1.0, ge=0)
    warming_amount: float = Field(5.0, ge=0)
    decay_idle_days: int = Field(7, ge=0)
    decay_rate: float = Field(0.01, ge=0, lt=1)
    decay_min_balance: float = Field(0.01, ge=0, description="smaller balances do not decay")
    min_salience: float = Field(10.0, ge=0, description="a topic's balance to be a target")
    cost_per_token: float = Field(0.001, ge=0)
    retain_factor: float = Field(1.5, ge=0)


class Reflection(Strict):
    nightly_targets: int = Field(60, ge=0)
    self_targets: int = Field(2, ge=0)
    concurrency: int = Field(4, ge=1, le=64)
    timeout_seconds: float = Field(120.0, gt=0)
    max_retries: int = Field(3, ge=0, le=10)
    repair_attempts: int = Field(1, ge=0, le=3)
    retry_backoff_seconds: float = Field(1.0, ge=0, le=60, description="first retry wait, doubling")


class ModelProfile(Strict):
    model: str | None = None
    temperature: float = Field(0.3, ge=0, le=2)
    max_tokens: int = Field(2000, ge=1)
    api_base: str | None = None


class Discord(Strict):
    self_user_id: str | None = None
    api_base: str = DEFAULT_API_BASE

    @field_validator("self_user_id")
    @classmethod
    def _snowflake(cls, value: str | None) -> str | None:
        if value is not None and not is_discord_id(value):
            raise ValueError("must be a Discord id (digits only)")
        return value


class Poll(Strict):
    initial_messages: int = Field(1000, ge=0)
    roles_refresh_minutes: float = Field(60.0, ge=0)
    max_wait_seconds: float = Field(60.0, ge=0)
    retry_backoff_seconds: float = Field(1.0, ge=0, description="first wait after a 5xx; doubles")


class Server(Strict):
    name: str | None = None
    focus: float = Field(1.0, ge=0)
    privacy_gate_role: str | None = None
    threads_as_topics: bool = False


class Analysis(Strict):
    """`zos analyze` (docs/analyze.md#configuration). `media`/`links` only say whether the
    nightly job runs it: the command itself analyses both unless told otherwise."""

    media: bool = False
    links: bool = False
    # true only for tests serving pages on 127.0.0.1: every non-public address is refused
    allow_private_addresses: bool = False
    refetch_days: int = Field(30, ge=0, description="a settled link status is tried again after")
    user_agent: str = Field(f"zos/{__version__}", min_length=1)
    max_link_bytes: int = Field(2_000_000, ge=1)
    max_image_bytes: int = Field(20_000_000, ge=1)
    allow_domains: list[str] = Field(default_factory=list)
    deny_domains: list[str] = Field(default_factory=list)


class Insights(Strict):
    """`[insights]`. `half_life_days` overrides the built-in table key by key: a file naming
    only `channel_reflection` keeps every other default."""

    half_life_days: dict[str, float] = Field(default_factory=lambda: dict(HALF_LIFE_DAYS))

    @field_validator("half_life_days")
    @classmethod
    def _over_defaults(cls, value: dict[str, float]) -> dict[str, float]:
        for category, days in value.items():
            if not days > 0:
                raise ValueError(f"{category}: a half-life is a number of days above 0")
        return {**HALF_LIFE_DAYS, **value}

    def half_life(self, category: str) -> float:
        return self.half_life_days.get(category, DEFAULT_HALF_LIFE_DAYS)


class SelfConcept(Strict):
    """`[self]`: zos's self-concept in every reflection prompt (docs/reflection.md#the-self-concept)."""
    prompt_tokens: int = Field(600, ge=50, le=8000, description="the self-concept's bound in a prompt")
    # A revision proposed by the self layer reaches every later prompt: the operator accepts
    # it (`zos self accept`) unless this says to take it at once.
    auto_accept: bool = False
    max_change_ratio: float = Field(0.5, ge=0, le=1, description="share of words a revision may change")


# The night's layers, in order (docs/nightly.md): people, pairs and places first, then subjects
# and emoji, then synthesis folds the fresh server insights into global topics, reconcile
# weighs what conflicts, and zos reflects on its own night last.
NIGHTLY_LAYERS = ("user", "dyad", "channel", "subject", "emoji", "synthesis", "reconcile", "self")


class Nightly(Strict):
    """`[nightly]`: what `zos nightly` runs after decay and analysis. Whether each named
    layer exists (shipped, or in ./layers) is checked when the night starts (exit 78)."""

    layers: list[str] = Field(default_factory=lambda: list(NIGHTLY_LAYERS))

    @field_validator("layers")
    @classmethod
    def _layer_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
                raise ValueError(f"{name!r} is not a layer name (lower case letters, digits, _)")
        repeated = sorted({n for n in value if value.count(n) > 1})
        if repeated:
            raise ValueError(f"{', '.join(repeated)} listed more than once: a layer runs "
                             "once a night")
        return value


class Subjects(Strict):
    """`[subjects]`: the subject lifecycle (docs/subjects.md) and the offline reflector's stop
    words (docs/reflection.md#the-offline-reflector)."""
    promote_after: int = Field(2, ge=1, description="different targets whose insights name a "
                               "subject before it is established")
    # Never a distinctive term, so never a subject name offline, beside the built-in English
    # list (`reflect/stop_words.py`); folded as the full-text index folds text.
    stop_words: list[str] = Field(default_factory=list)


class Config(Strict):
    db: str | None = None
    discord: Discord = _defaults(Discord)
    salience: Salience = _defaults(Salience)
    reflection: Reflection = _defaults(Reflection)
    models: dict[str, ModelProfile] = Field(default_factory=dict)
    poll: Poll = _defaults(Poll)
    analysis: Analysis = _defaults(Analysis)
    insights: Insights = _defaults(Insights)
    self_: SelfConcept = Field(_defaults(SelfConcept), alias="self")
    nightly: Nightly = _defaults(Nightly)
    subjects: Subjects = _defaults(Subjects)
    servers: dict[str, Server] = Field(default_factory=dict)

    @field_validator("servers")
    @classmethod
    def _server_ids(cls, value: dict[str, Server]) -> dict[str, Server]:
        for key in value:
            if not is_discord_id(key):
                raise ValueError(f"server key {key!r} must be a Discord server id (digits only)")
        return value

    def server(self, server_id: str | None) -> Server:
        found = self.servers.get(server_id or "")
        return found if found is not None else _DEFAULT_SERVER


# Asked for on every salience event: built once, never changed.
_DEFAULT_SERVER = _defaults(Server)


def _describe(error: dict) -> str:
    where = ".".join(str(p) for p in error["loc"]) or "(top level)"
    if error["type"] == "extra_forbidden":
        return f"{where}: unknown setting"
    return f"{where}: {error['msg']}"


def load_config(path: str | Path | None, *, explicit: bool = False) -> Config:
    """Read `path` (or return defaults when it is absent and was not asked for)."""
    if path is None:
        return _defaults(Config)
    path = Path(path)
    if not path.exists():
        if explicit:
            raise ConfigError(f"config file {path} does not exist")
        return _defaults(Config)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})")
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}")
    except OSError as exc:  # a folder, no permission
        raise ConfigError(f"config file {path} cannot be read ({exc.strerror})")
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(_describe(e) for e in exc.errors())
        raise ConfigError(f"{path}: {problems}")


def discord_api_base(config: Config) -> str:
    return os.environ.get("ZOS_DISCORD_API_BASE") or config.discord.api_base
