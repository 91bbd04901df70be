"""Context assembly: the prompt for one target, within the layer's token budget.

Budget (tokens estimated as characters / 4, see `timefmt`): the template rendered with no
material is the fixed cost; prior insights may use the retrieval profile's share of what is
left (recent 20%, balanced 30%, deep 45%); messages fill the rest, newest first, and are shown
in time order. A target's reflection reads only messages past its high-water mark (the newest
message its last reflection read); the newest message read becomes the next mark.

Message text is quoted as JSON strings between BEGIN DATA / END DATA lines: a message can never
end the data block or look like an instruction line, whatever it contains. What a message
shared (an image's description, a page's title and summary, a file's name: see `analyses`) is
quoted the same way on the same line, and counts against the budget with it.

Every prompt starts with zos's self-concept (`self_concept.prompt_block`): the active version,
bounded by `[self] prompt_tokens`, fenced as zos's own words (not BEGIN DATA), and part of the
fixed cost, so it counts against the layer's budget. The self layer (`source = "self"`) also
reads zos's own recent work (`self_work`), counts only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlite_utils

from zos_cli import topics
from zos_cli.config import Config
from zos_cli.labels import server_place
from zos_cli.privacy.scope import combine_scopes
from zos_cli.reflect import material, self_concept, self_work
from zos_cli.reflect.analyses import line_parts, quoted
from zos_cli.reflect.layers import Layer
from zos_cli.reflect.llm import SYSTEM_PROMPT
from zos_cli.reflect.material import Mark, Target
from zos_cli.reflect.people import Namer
from zos_cli.reflect.timefmt import estimate_tokens, relative
from zos_cli.store.db import self_user_id
from zos_cli.timeutil import parse_time

MAX_MESSAGE_CHARS = 1500
MAX_INSIGHT_CHARS = 1200
SELF_SHARE = 5   # the self-concept block takes at most 1/SELF_SHARE of a layer's budget


@dataclass
class Context:
    target: Target
    layer: Layer
    as_of: str
    prompt: str
    messages: list[dict] = field(default_factory=list)        # time order
    prior: list[dict] = field(default_factory=list)           # prior insights shown
    source_insights: list[dict] = field(default_factory=list)  # synthesis material
    aliased: dict[str, str] = field(default_factory=dict)     # user id → <chat_N>
    reactions: dict[str, list[tuple]] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)      # user id → label used
    channel_names: dict[str, str] = field(default_factory=dict)
    label: str = ""                   # how the prompt names the target
    mark: Mark | None = None          # the mark this context started from
    new_mark: Mark | None = None      # the newest item it read
    self_version: int | None = None   # the self-concept version the prompt carries
    work: self_work.SelfWork | None = None   # the self layer's: zos's own recent runs
    work_lines: list[str] = field(default_factory=list)

    @property
    def tokens(self) -> int:
        """Estimated prompt tokens (system prompt included)."""
        return estimate_tokens(SYSTEM_PROMPT) + estimate_tokens(self.prompt)

    @property
    def has_material(self) -> bool:
        return bool(self.messages or self.source_insights or self.work_lines)

    @property
    def provenance_insights(self) -> list[dict]:
        return self.prior + self.source_insights

    def scope(self) -> str:
        """public | dm | derived, from everything in the context (docs/privacy.md#scope): an insight
        source carries its own scope, so the result is transitive through insights."""
        scopes = {m["visibility_scope"] for m in self.messages}
        scopes |= {i["sources_scope_max"] for i in self.provenance_insights}
        return combine_scopes(scopes)


def target_label(namer: Namer, db: sqlite_utils.Database, target: Target) -> str:
    k = target.kind
    if k in ("user", "user_in_channel"):
        who = namer.label(target.user_ids[0], target.server_id)
        return who if k == "user" else f"{who} in {namer.channel_name(target.channel_id)}"
    if k in ("dyad", "dyad_in_channel"):
        a, b = (namer.label(u, target.server_id) for u in target.user_ids)
        pair = f"{a} and {b}"
        return pair if k == "dyad" else f"{pair} in {namer.channel_name(target.channel_id)}"
    if k in ("channel", "thread"):
        return namer.channel_name(target.channel_id)
    if k == "subject":
        return target.name.replace("_", " ")
    if k == "emoji":
        row = db.execute("SELECT emoji FROM reactions WHERE emoji_id = ? LIMIT 1",
                         [target.emoji_id]).fetchone()
        return f":{row[0]}:" if row else f"custom emoji {target.emoji_id}"
    if k == "role":
        return "@" + namer.role_name(target.role_id)
    if k == "self":
        return "zos itself"
    return target.key


def server_name(db: sqlite_utils.Database, server_id: str | None) -> str | None:
    return None if server_id is None else server_place(db, server_id)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + " …[truncated]"


def message_line(namer: Namer, message: dict, as_of: str, reactions: list[tuple]) -> str:
    server = message["server_id"]
    who = namer.label(message["author_id"], server)
    reply = ""
    if message["reply_author_id"]:
        reply = f" (replying to {namer.label(message['reply_author_id'], server)})"
    # What the message shared, as `zos analyze` read it (quoted like the text); not for
    # people outside the privacy gate, whose images and links are never analysed anyway.
    shared = line_parts(message, show_analyses=message["author_id"] not in namer.aliased)
    extras = list(shared.plain)
    if reactions:
        extras.append("reactions " + ", ".join(f"{e}×{n}" for e, n in reactions[:6]))
    tail = "".join(f" [{marker}]" for marker in shared.markers)
    tail += f" [{'; '.join(extras)}]" if extras else ""
    text = _clip(namer.readable(message["content"] or "", server, message["id"]),
                 MAX_MESSAGE_CHARS)
    where = namer.channel_name(message["channel_id"])
    when = relative(message["created_at"], as_of)
    return f"[{when} · {where}] {who}{reply}: {quoted(text)}{tail}"


def insight_line(insight: dict, as_of: str, where: str | None = None) -> str:
    place = f" · {where}" if where else ""
    text = _clip(insight["content"], MAX_INSIGHT_CHARS)
    made = insight.get("made_as_of") or insight["created_at"]
    # (Made by a run set later than this one, e.g. `--as-of now` beside the data's clock: its
    # date, not "in 2 years".)
    when = relative(made, as_of) if made <= as_of else f"as of {made[:10]}"
    return (f"[id {insight['id']} · {when}{place} · "
            f"strength {insight['strength']:.2f} · confidence {insight['confidence']:.2f}] "
            f"{quoted(text)}")


def build_context(db: sqlite_utils.Database, config: Config, layer: Layer, target: Target,
                  as_of: str) -> Context:
    """Everything one reflection of `target` reads, rendered into its prompt."""
    namer = Namer(db, config, self_user_id(db, config))
    mark = material.get_mark(db, layer.name, target.key)
    label = target_label(namer, db, target)
    variables = {
        "target": {
            "key": target.key, "kind": target.kind, "category": target.category,
            "label": label, "server": server_name(db, target.server_id),
            "is_global": target.is_global, "balance": round(target.balance, 2),
        },
        "as_of": parse_time(as_of).strftime("%Y-%m-%d %H:%M UTC"),
        "first_reflection": mark is None,
        "self_concept": {"tokens": config.self_.prompt_tokens,
                         "max_change_ratio": config.self_.max_change_ratio},
    }
    concept = self_concept.for_prompt(db)
    # At most [self] prompt_tokens, and never more than a fifth of a small layer budget: the
    # prompt must still fit its context_tokens with room for material.
    preamble = self_concept.prompt_block(
        concept["content"],
        min(config.self_.prompt_tokens, layer.spec.context_tokens // SELF_SHARE))
    work = self_work.recent_work(db, layer.name) if layer.spec.source == "self" else None
    work_lines = self_work.lines(work) if work is not None else []

    def render(transcript: list[str], prior_lines: list[str], people: list[str],
               aliased: int, shared: int = 0) -> str:
        return preamble + layer.render(
            **variables,
            work="\n".join(work_lines),
            work_count=len(work_lines),
            transcript="\n".join(transcript),
            message_count=len(transcript),
            prior_insights="\n".join(prior_lines),
            prior_count=len(prior_lines),
            people=people,
            aliased_count=aliased,
            shared_count=shared,
        )

    fixed = estimate_tokens(SYSTEM_PROMPT) + estimate_tokens(render([], [], [], 0))
    available = max(layer.spec.context_tokens - fixed, 0)

    prior, prior_lines, used = [], [], 0
    prior_budget = int(available * material.PRIOR_SHARE[layer.spec.retrieval])
    for insight in material.prior_insights(db, target, layer.spec.retrieval, as_of,
                                                config.insights):
        line = insight_line(insight, as_of)
        cost = estimate_tokens(line) + 1
        if used + cost > prior_budget:
            break
        prior.append(insight)
        prior_lines.append(line)
        used += cost
    budget = available - used

    context = Context(target, layer, as_of, prompt="", prior=prior, mark=mark, label=label,
                      self_version=concept["version"], work=work, work_lines=work_lines)
    if layer.spec.source == "server_insights":
        lines = _take_server_insights(db, target, mark, as_of, budget, context)
    else:
        lines = _take_messages(db, config, namer, target, mark, as_of, budget, context)
    # The estimate above leaves out the few lines the template adds around the material
    # (names, reactions); drop the oldest items until the rendered prompt fits.
    while True:
        people = sorted({namer.label(m["author_id"], m["server_id"]) for m in context.messages}
                        - set(namer.aliased.values()))
        shared = sum(1 for m in context.messages if line_parts(
            m, show_analyses=m["author_id"] not in namer.aliased).markers)
        context.prompt = render(lines, prior_lines, people, len(namer.aliased), shared)
        if context.tokens <= layer.spec.context_tokens or len(lines) <= 1:
            break
        lines.pop(0)
        if context.messages:
            context.messages.pop(0)
        else:
            context.source_insights.pop(0)
    context.aliased = {u: a for u, a in namer.aliased.items()
                       if any(u in (m["author_id"], m["reply_author_id"]) for m in context.messages)
                       or any(a in line for line in lines)}
    for m in context.messages:
        for user_id in (m["author_id"], m["reply_author_id"]):
            if user_id:
                context.labels[user_id] = namer.label(user_id, m["server_id"])
        context.channel_names[m["channel_id"]] = namer.channel_name(m["channel_id"])
        # (The text as the prompt shows it, people outside the gate as <chat_N>: the offline
        # reflector quotes and weighs this, never the raw content.)
        m["readable"] = namer.readable(m["content"] or "", m["server_id"], m["id"])
    return context


def _take_messages(db, config, namer: Namer, target: Target, mark: Mark | None, as_of: str,
                   budget: int, context: Context) -> list[str]:
    chosen: list[dict] = []
    used = 0
    for message in material.newest_messages(db, config, target, mark, as_of):
        # Lines are measured before reactions are known; reactions add a few tokens each,
        # kept inside the budget by a 10% reserve.
        line = message_line(namer, message, as_of, [])
        cost = estimate_tokens(line) + 1
        if used + cost > budget * 0.9 and chosen:
            break
        chosen.append(message)
        used += cost
        if used > budget * 0.9:
            break
    chosen.reverse()
    context.messages = chosen
    context.reactions = material.reactions_on(db, [m["id"] for m in chosen])
    if chosen:
        newest = chosen[-1]
        context.new_mark = Mark(newest["created_at"], newest["id"])
    return [message_line(namer, m, as_of, context.reactions.get(m["id"], [])) for m in chosen]


def _take_server_insights(db, target: Target, mark: Mark | None, as_of: str, budget: int,
                          context: Context) -> list[str]:
    chosen, lines, used = [], [], 0
    names: dict[str, str] = {}
    for insight in material.server_insights_for(db, target, mark):
        server_id = topics.server_id_of(insight["topic_key"])
        if server_id not in names:
            names[server_id] = server_name(db, server_id)
        line = insight_line(insight, as_of, names[server_id])
        cost = estimate_tokens(line) + 1
        if used + cost > budget and chosen:
            break
        chosen.append(insight)
        lines.append(line)
        used += cost
    chosen.reverse()
    lines.reverse()
    context.source_insights = chosen
    if chosen:
        newest = chosen[-1]
        context.new_mark = Mark(newest["created_at"], newest["id"])
    return lines
