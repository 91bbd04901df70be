"""The model's answer, validated: what a reflection may say, and nothing else.

The model never chooses the topic, scope or table of what is stored: the answer has no such
fields, and unknown keys are rejected (`extra="forbid"`). The same models produce the JSON
schema sent with every request (`response_format`).
"""

from __future__ import annotations

import copy
import json
import re
from typing import Annotated, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

VALENCE_FIELDS = (
    "joy", "concern", "curiosity", "warmth", "tension",
    "awe", "grief", "longing", "peace", "gratitude",
)
SUBJECT_PATTERN = re.compile(r"^[a-z_][a-z0-9_]*$")
# Markdown/HTML images render as requests to whatever host they name (exfiltration when an
# export is viewed), so an insight may not carry one.
IMAGE_MARKUP = re.compile(r"!\[[^\]]*\]\s*\(|<\s*img\b", re.IGNORECASE)

MAX_TERM_CHARS = 60
MAX_TERM_WORDS = 6
Unit = Field(ge=0.0, le=1.0)
AnswerT = TypeVar("AnswerT", bound=BaseModel)


def embeds_image(text: str) -> bool:
    """Whether text carries a markdown or HTML image (rendered, it fetches from a host)."""
    return bool(IMAGE_MARKUP.search(text))


def fold_subject(value: str) -> str | None:
    """A subject name as a model or an operator writes it ("Board games") in the form of
    topic keys (board_games); None for a blank one. ValueError when it is still outside
    [a-z_][a-z0-9_]* after that folding."""
    folded = re.sub(r"[\s\-]+", "_", value.strip().lower())
    if folded == "":
        return None
    if not SUBJECT_PATTERN.match(folded):
        raise ValueError("subject must match [a-z_][a-z0-9_]*")
    return folded


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Valence(Strict):
    joy: float | None = Field(None, ge=0.0, le=1.0)
    concern: float | None = Field(None, ge=0.0, le=1.0)
    curiosity: float | None = Field(None, ge=0.0, le=1.0)
    warmth: float | None = Field(None, ge=0.0, le=1.0)
    tension: float | None = Field(None, ge=0.0, le=1.0)
    awe: float | None = Field(None, ge=0.0, le=1.0)
    grief: float | None = Field(None, ge=0.0, le=1.0)
    longing: float | None = Field(None, ge=0.0, le=1.0)
    peace: float | None = Field(None, ge=0.0, le=1.0)
    gratitude: float | None = Field(None, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _at_least_one(self) -> Valence:
        if all(getattr(self, name) is None for name in VALENCE_FIELDS):
            raise ValueError("valence needs at least one of " + ", ".join(VALENCE_FIELDS))
        return self

    def columns(self) -> dict[str, float | None]:
        return {f"valence_{name}": getattr(self, name) for name in VALENCE_FIELDS}


class InsightOut(Strict):
    content: str = Field(min_length=1, max_length=4000)
    confidence: float = Unit
    importance: float = Unit
    novelty: float = Unit
    strength_adjustment: float = Field(ge=0.1, le=10.0)
    valence: Valence
    subject: str | None = Field(None, max_length=64)
    open_questions: list[str] = Field(default_factory=list, max_length=5)
    conflicts_with: list[str] = Field(default_factory=list, max_length=20)
    supersedes: str | None = None
    # Standing insights the new material restates: each is reconfirmed (its fading clock
    # restarts). Ids not shown in the target's context are dropped when stored.
    confirms: list[str] = Field(default_factory=list, max_length=20)
    # Key terms of the subject it names (short phrases): stored with the insight and searched,
    # with the subject's name and aliases, for that subject's messages (docs/subjects.md).
    subject_terms: list[Annotated[str, Field(max_length=MAX_TERM_CHARS)]] = Field(
        default_factory=list, max_length=5,
        description="up to 5 short phrases people use for the subject named, so that its "
                    "messages can be found")

    @field_validator("content")
    @classmethod
    def _no_images(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("content is empty")
        if IMAGE_MARKUP.search(value):
            raise ValueError("content may not embed images (markdown or HTML)")
        return value.strip()

    @field_validator("subject", mode="before")
    @classmethod
    def _subject_name(cls, value):
        if value is None:
            return None
        if not isinstance(value, str):
            raise ValueError("subject must be a string or null")
        return fold_subject(value)

    @field_validator("subject_terms")
    @classmethod
    def _terms(cls, value: list[str]) -> list[str]:
        terms, seen = [], set()
        for term in value:
            text = " ".join(term.split())
            if len(text.split()) > MAX_TERM_WORDS:
                raise ValueError(f"a subject term is a short phrase (at most {MAX_TERM_WORDS} "
                                 "words)")
            if text and text.lower() not in seen:
                seen.add(text.lower())
                terms.append(text)
        return terms


class ReflectionOut(Strict):
    insights: list[InsightOut] = Field(min_length=1, max_length=5)


class SelfReflectionOut(ReflectionOut):
    """The self layer's answer: beside its insights, optionally a revised self-concept (only
    this layer's schema has it; `self_concept.propose` decides what becomes of it)."""
    self_concept: str | None = Field(None, max_length=20000)

    @field_validator("self_concept")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value if value is None or value.strip() else None


# The reconcile layer's answer (docs/reflection.md#reconciled-conflicts). (The docstrings go
# into the JSON schema the model is sent.)
class Resolution(Strict):
    """A verdict on one conflicting pair: its two ids as shown; merged only with merge."""
    first: str = Field(min_length=1, max_length=64)
    second: str = Field(min_length=1, max_length=64)
    verdict: Literal["keep_first", "keep_second", "both_true", "merge"]
    merged: InsightOut | None = None

    @model_validator(mode="after")
    def _merged_with_merge_only(self) -> Resolution:
        if self.verdict == "merge" and self.merged is None:
            raise ValueError("a merge needs its merged insight")
        if self.verdict != "merge" and self.merged is not None:
            raise ValueError(f"merged must be null for {self.verdict}")
        return self


class ReconcileOut(Strict):
    """One resolution per conflicting pair."""
    resolutions: list[Resolution] = Field(min_length=1, max_length=20)


def answer_model_for(layer) -> type[BaseModel]:
    """The answer a layer's requests ask for: the self layer's may carry `self_concept`; the
    reconcile layer's (`source = "conflicts"`) holds resolutions, not insights."""
    if layer.spec.source == "conflicts":
        return ReconcileOut
    return SelfReflectionOut if layer.spec.source == "self" else ReflectionOut


class InvalidAnswer(ValueError):
    """The model's text is not a valid reflection; `reason` says why (fed to the repair)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _strip_fences(text: str) -> str:
    # Some models wrap JSON in ``` fences despite response_format; accept exactly that.
    stripped = text.strip()
    m = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", stripped, re.DOTALL)
    return m.group(1) if m else stripped


def parse_model(text: str | None, model: type[AnswerT], what: str) -> AnswerT:
    """The answer text validated as `model` (`what` names it in reasons, e.g. "a
    reflection"), or InvalidAnswer with the reasons."""
    if text is None or not text.strip():
        raise InvalidAnswer("the answer is empty")
    try:
        data = json.loads(_strip_fences(text))
    except ValueError as exc:
        raise InvalidAnswer(f"the answer is not JSON ({exc})")
    except RecursionError:  # ('[' * 50000: the decoder recurses per level)
        raise InvalidAnswer(f"the answer is not {what}: JSON nested too deeply")
    try:
        return model.model_validate(data)
    except RecursionError:
        raise InvalidAnswer(f"the answer is not {what}: JSON nested too deeply")
    except ValidationError as exc:
        problems = []
        for error in exc.errors()[:10]:
            where = ".".join(str(p) for p in error["loc"]) or "(top level)"
            message = "unknown key" if error["type"] == "extra_forbidden" else error["msg"]
            problems.append(f"{where}: {message}")
        raise InvalidAnswer("; ".join(problems))


def parse_answer(text: str | None,
                 model: type[ReflectionOut] = ReflectionOut) -> ReflectionOut:
    """The answer text to a validated ReflectionOut (or `model`), or InvalidAnswer with the
    reasons."""
    return parse_model(text, model, "a reflection")


# Keywords strict structured-output modes refuse (OpenAI's strict subset has no string
# lengths); pydantic still enforces them on the answer.
_DROPPED_KEYWORDS = ("title", "default", "minLength", "maxLength")


def _tidy(node):
    """Make pydantic's schema one that strict structured-output APIs accept: no titles,
    defaults or string lengths, every property required (optional ones are nullable), no
    extra keys."""
    if isinstance(node, dict):
        node = {k: _tidy(v) for k, v in node.items() if k not in _DROPPED_KEYWORDS}
        if node.get("type") == "object" and "properties" in node:
            node["required"] = list(node["properties"])
            node["additionalProperties"] = False
        return node
    if isinstance(node, list):
        return [_tidy(v) for v in node]
    return node


def _inline(node, defs: dict):
    if isinstance(node, dict):
        if "$ref" in node:
            name = node["$ref"].rsplit("/", 1)[-1]
            return _inline(copy.deepcopy(defs[name]), defs)
        return {k: _inline(v, defs) for k, v in node.items() if k != "$defs"}
    if isinstance(node, list):
        return [_inline(v, defs) for v in node]
    return node


def json_schema_of(model: type[BaseModel]) -> dict:
    """The strict-mode JSON schema of an answer model (references inlined)."""
    raw = model.model_json_schema()
    return _tidy(_inline(raw, raw.get("$defs", {})))


def output_json_schema() -> dict:
    return json_schema_of(ReflectionOut)


def response_format_for(model: type[BaseModel], name: str) -> dict:
    """The `response_format` of a request whose answer is `model`."""
    return {
        "type": "json_schema",
        "json_schema": {"name": name, "schema": json_schema_of(model), "strict": True},
    }


def response_format(model: type[ReflectionOut] = ReflectionOut) -> dict:
    """The `response_format` of a reflection request (`model`: the layer's answer)."""
    return response_format_for(model, "reflection")
