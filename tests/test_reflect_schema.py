"""The answer schema: whatever a model sends, it is either a valid reflection or an
InvalidAnswer with reasons — never an exception of another kind, never a half-valid answer."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fake_openai import valid_answer
from zos_cli.reflect.schema import (
    SUBJECT_PATTERN, VALENCE_FIELDS, InvalidAnswer, parse_answer, response_format)

json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False, width=32) | st.integers()
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
keys = st.sampled_from(["content", "confidence", "importance", "novelty", "strength_adjustment",
                        "valence", "subject", "open_questions", "conflicts_with", "supersedes",
                        "topic_key", "sources_scope_max", "table"])
insight_like = st.dictionaries(keys, json_values, max_size=10)
answers = st.one_of(
    json_values,
    st.builds(lambda items: {"insights": items}, st.lists(insight_like, max_size=6)),
    st.builds(lambda mutation: {"insights": [{**valid_answer()["insights"][0], **mutation}]},
              insight_like),
)


def _check_valid(answer) -> None:
    assert 1 <= len(answer.insights) <= 5
    for insight in answer.insights:
        assert insight.content.strip()
        for value in (insight.confidence, insight.importance, insight.novelty):
            assert 0.0 <= value <= 1.0
        assert 0.1 <= insight.strength_adjustment <= 10.0
        valence = insight.valence.columns()
        assert any(v is not None for v in valence.values())
        assert insight.subject is None or SUBJECT_PATTERN.match(insight.subject)


@settings(max_examples=300, deadline=None)
@given(answers)
def test_any_answer_is_valid_or_refused(value):
    try:
        answer = parse_answer(json.dumps(value))
    except InvalidAnswer as exc:
        assert exc.reason
        return
    _check_valid(answer)


def test_fenced_json_is_accepted_and_prose_is_not():
    text = json.dumps(valid_answer())
    assert len(parse_answer(f"```json\n{text}\n```").insights) == 1
    try:
        parse_answer(f"Here you go: {text}")
    except InvalidAnswer as exc:
        assert exc.reason.startswith("the answer is not JSON")
    else:
        raise AssertionError("prose around JSON was accepted")


def test_response_format_is_strict_and_closed():
    schema = response_format()["json_schema"]["schema"]
    item = schema["properties"]["insights"]["items"]
    assert schema["additionalProperties"] is False and item["additionalProperties"] is False
    assert set(item["required"]) == set(item["properties"])
    assert set(item["properties"]["valence"]["properties"]) == set(VALENCE_FIELDS)
    assert schema["properties"]["insights"]["minItems"] == 1
    assert schema["properties"]["insights"]["maxItems"] == 5
    assert "maxLength" not in json.dumps(schema) and "$ref" not in json.dumps(schema)


def test_json_nested_too_deeply_is_an_invalid_answer_not_a_crash():
    # json.loads recurses per level: a hostile or broken model must fail its target only.
    for text in ("[" * 50000 + "]" * 50000,
                 '{"insights": [{"content": ' + "[" * 5000 + "]" * 5000 + "}]}"):
        try:
            parse_answer(text)
        except InvalidAnswer as exc:
            assert exc.reason == "the answer is not a reflection: JSON nested too deeply"
        else:
            raise AssertionError("a deeply nested answer was accepted")
