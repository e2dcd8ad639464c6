"""Tests of the loopback receiver in the test kit: scripts, delays, gates, stop and restart."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest

from hookgate.testing.receiver import LoopbackReceiver, ReceivedRequest, Reply


class KeyReceiver(LoopbackReceiver):
    """Accepts POST /in with the header `X-Key: k` and records the bodies."""

    def __init__(self, port: int = 0, *, key: str = "k") -> None:
        super().__init__(port)
        self.key = key
        self.bodies: list[bytes] = []

    def respond(self, request: ReceivedRequest) -> Reply:
        if request.path != "/in":
            return self.error_reply(404, "no such path")
        if request.headers.get("x-key") != self.key:
            return self.error_reply(401, "invalid key")
        with self.lock:
            self.bodies.append(request.body)
        return Reply.json(202, {"accepted": 1})


def post(receiver: LoopbackReceiver, body: bytes = b"entry", path: str = "/in",
         key: str = "k", timeout: float = 5.0) -> tuple[int, dict[str, str], Any]:
    request = urllib.request.Request(receiver.base_url + path, data=body,
                                     headers={"X-Key": key}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, dict(error.headers), json.loads(error.read())


@pytest.fixture
def receiver(start_receiver: Callable[..., Any]) -> KeyReceiver:
    return start_receiver(KeyReceiver)


def test_respond_checks_and_records(receiver: KeyReceiver) -> None:
    accepted = post(receiver, b"first")
    wrong_key = post(receiver, key="other")
    wrong_path = post(receiver, path="/out")

    assert accepted[0] == 202
    assert accepted[1]["Content-Type"] == "application/json"
    assert accepted[2] == {"accepted": 1}
    assert wrong_key[0] == 401
    assert wrong_key[2] == {"message": "invalid key"}
    assert wrong_path[0] == 404
    assert receiver.bodies == [b"first"]
    assert receiver.requests == 3
    assert receiver.statuses == [202, 401, 404]


def test_script_answers_first_in_order(receiver: KeyReceiver) -> None:
    receiver.script.extend([(429, {"Retry-After": "7"}), (503, {})])

    first = post(receiver)
    second = post(receiver)
    third = post(receiver)

    assert first[0] == 429
    assert first[1]["Retry-After"] == "7"
    assert first[2] == {"message": "scripted"}
    assert second[0] == 503
    assert third[0] == 202
    assert receiver.bodies == [b"entry"]
    assert receiver.statuses == [429, 503, 202]


def test_scripted_reply_uses_error_format(start_receiver: Callable[..., Any]) -> None:
    class ListErrors(KeyReceiver):
        def error_reply(self, status: int, message: str) -> Reply:
            return Reply.json(status, {"errors": [message]})

    receiver = start_receiver(ListErrors)
    receiver.script.append((500, {}))

    assert post(receiver)[2] == {"errors": ["scripted"]}


def test_gate_holds_requests(receiver: KeyReceiver) -> None:
    receiver.gate = threading.Event()
    results: list[int] = []
    client = threading.Thread(target=lambda: results.append(post(receiver)[0]))

    client.start()
    arrived = receiver.wait_for(lambda: receiver.requests == 1, timeout=5)
    time.sleep(0.1)
    answered_while_held = list(results)
    receiver.gate.set()
    client.join(5)

    assert arrived
    assert answered_while_held == []
    assert results == [202]


def test_delay_slows_each_request(receiver: KeyReceiver) -> None:
    receiver.delay = 0.3

    with pytest.raises(TimeoutError):
        post(receiver, timeout=0.1)


def test_stop_refuses_then_restart(receiver: KeyReceiver,
                                   start_receiver: Callable[..., Any]) -> None:
    post(receiver)
    port = receiver.port

    receiver.stop()
    receiver.stop()
    with pytest.raises(urllib.error.URLError):
        post(receiver)
    receiver.start()
    again = post(receiver)

    assert again[0] == 202
    assert receiver.port == port
    assert receiver.bodies == [b"entry", b"entry"]


def test_new_receiver_on_stopped_port(receiver: KeyReceiver,
                                      start_receiver: Callable[..., Any]) -> None:
    port = receiver.port
    receiver.stop()

    back = start_receiver(KeyReceiver, port, key="k2")

    assert back.port == port
    assert post(back, key="k2")[0] == 202


def test_wait_for_times_out(receiver: KeyReceiver) -> None:
    started = time.monotonic()

    met = receiver.wait_for(lambda: receiver.requests > 0, timeout=0.2)

    assert met is False
    assert time.monotonic() - started >= 0.2


def test_respond_required() -> None:
    with pytest.raises(NotImplementedError, match="LoopbackReceiver must implement respond"):
        LoopbackReceiver().respond(ReceivedRequest("/", None, b""))  # type: ignore[arg-type]
