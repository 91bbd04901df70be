"""`zos reflect --cache`: a stored answer for the same model and prompt is replayed instead
of calling the model again (the answer is written by `store.store_target`)."""

from __future__ import annotations

import hashlib
import json

from zos_cli.reflect import llm
from zos_cli.reflect.context import Context
from zos_cli.reflect.llm import CallRecord, ModelChoice, ModelOutcome
from zos_cli.reflect.schema import (ReflectionOut, InvalidAnswer, answer_model_for, parse_answer,
                                    response_format)


def cache_key(choice: ModelChoice, prompt: str,
              answer_model: type[ReflectionOut] = ReflectionOut) -> str:
    payload = json.dumps({
        "model": choice.model, "temperature": choice.temperature,
        "max_tokens": choice.max_tokens, "messages": llm.build_messages(prompt),
        "response_format": response_format(answer_model),
    }, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()


def cached_answer(db, choice: ModelChoice, context: Context) -> tuple[ModelOutcome | None, dict]:
    """A stored answer for the same model and prompt, replayed as a `cached` call."""
    answer_model = answer_model_for(context.layer)
    key = cache_key(choice, context.prompt, answer_model)
    row = db.execute(
        "SELECT response, tokens_input, tokens_output FROM llm_cache WHERE cache_key = ?", [key]
    ).fetchone()
    entry = {"key": key, "hit": False}
    if row is None:
        return None, entry
    try:
        answer = parse_answer(row[0], answer_model)
    except InvalidAnswer:
        return None, entry  # a stale entry from an older schema: ask the model again
    provider, name = llm.provider_and_name(choice.model)
    call = CallRecord(context.target.key, choice.profile, provider, name,
                      json.dumps(llm.build_messages(context.prompt), ensure_ascii=False), row[0],
                      tokens_input=row[1], tokens_output=row[2], status="cached")
    entry["hit"] = True
    return ModelOutcome(answer, [call], None, row[0]), entry
