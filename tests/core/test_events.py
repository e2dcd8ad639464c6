"""The event model: read-only data, content stripping and serialization."""

from __future__ import annotations

import copy
import json
import os
import re

import pydantic
import pytest

from hookgate import CallEvent, FrozenDict
from hookgate.events import new_call_id
from hookgate.testing import make_event


def set_item(mapping, key, value):
    mapping[key] = value


def delete_item(mapping, key):
    del mapping[key]


def merge_in_place(mapping):
    mapping |= {"extra": 1}


MUTATIONS = {
    "message item": lambda e: set_item(e.messages[0], "content", "changed"),
    "message update": lambda e: e.messages[0].update(content="changed"),
    "message delete": lambda e: delete_item(e.messages[0], "role"),
    "params pop": lambda e: e.params.pop("temperature"),
    "params clear": lambda e: e.params.clear(),
    "params setdefault": lambda e: e.params.setdefault("seed", 1),
    "params popitem": lambda e: e.params.popitem(),
    "params merge": lambda e: merge_in_place(e.params),
    "nested response": lambda e: set_item(e.response["choices"][0]["message"], "content", "x"),
}


@pytest.mark.parametrize("mutation", MUTATIONS.values(), ids=MUTATIONS.keys())
def test_nested_data_is_read_only(mutation):
    event = make_event()
    before = event.model_dump()

    with pytest.raises(TypeError, match="read-only"):
        mutation(event)

    assert event.model_dump() == before


def test_messages_tuple_has_no_append():
    event = make_event()
    with pytest.raises(AttributeError):
        event.messages.append({"role": "user", "content": "more"})


@pytest.mark.parametrize(("path", "value"), [
    ((), ("model", "other")),
    (("usage",), ("total_tokens", 1)),
    (("metadata",), ("user", "someone-else")),
    (("error",), ("status_code", 200)),
])
def test_models_are_frozen(path, value):
    event = make_event("failure") if path == ("error",) else make_event()
    target = event
    for attribute in path:
        target = getattr(target, attribute)

    with pytest.raises(pydantic.ValidationError, match="frozen"):
        setattr(target, *value)


def test_input_lists_are_copied():
    messages = [{"role": "user", "content": "hi", "parts": ["a", "b"]}]
    event = make_event(messages=messages)

    messages[0]["content"] = "changed after the event was built"

    assert event.messages[0]["content"] == "hi"
    assert event.messages[0]["parts"] == ("a", "b")
    assert isinstance(event.messages[0], FrozenDict)


def test_copy_returns_same_frozen_dict():
    params = make_event().params
    assert copy.copy(params) is params
    assert copy.deepcopy(params) is params


def test_unknown_field_rejected():
    with pytest.raises(pydantic.ValidationError, match="extra"):
        make_event(api_key="sk-secret")


def test_call_ids_are_unique_hex():
    ids = {make_event().call_id for _ in range(100)}
    assert len(ids) == 100
    assert all(re.fullmatch(r"[0-9a-f]{32}", call_id) for call_id in ids)


def test_json_round_trip():
    event = make_event()
    assert CallEvent.model_validate_json(event.model_dump_json()) == event


def test_frozen_dict_serializes_as_object():
    assert json.loads(json.dumps(make_event().params)) == {"temperature": 0.2, "max_tokens": 64}


def test_without_content_strips_messages_and_choices():
    event = make_event()

    stripped = event.without_content()

    assert stripped.messages == ()
    assert "choices" not in stripped.response
    assert stripped.response["usage"] == event.response["usage"]
    assert stripped.usage == event.usage
    assert stripped.params == event.params
    assert stripped.call_id == event.call_id
    assert len(event.messages) == 2


def test_without_content_strips_embeddings():
    event = make_event(
        call_type="embedding", route="/v1/embeddings", messages=["secret text"],
        response={"object": "list", "data": [{"embedding": [0.1, 0.2]}], "model": "e"},
    )

    stripped = event.without_content()

    assert stripped.messages == ()
    assert stripped.response == {"object": "list", "model": "e"}


def test_without_content_keeps_failure():
    event = make_event("failure")
    stripped = event.without_content()
    assert stripped.response is None
    assert stripped.error == event.error


def test_call_ids_unique_hex() -> None:
    ids = [new_call_id() for _ in range(10_000)]

    assert len(set(ids)) == len(ids)
    assert all(len(call_id) == 32 for call_id in ids)
    assert all(int(call_id, 16) >= 0 for call_id in ids)


def test_call_ids_differ_after_fork() -> None:
    new_call_id()  # fill the buffer in the parent
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(read_end)
        os.write(write_end, new_call_id().encode())
        os._exit(0)

    os.close(write_end)
    child_id = os.read(read_end, 64).decode()
    os.close(read_end)
    os.waitpid(child, 0)
    parent_id = new_call_id()

    assert len(child_id) == 32
    assert child_id != parent_id
