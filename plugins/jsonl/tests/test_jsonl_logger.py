"""The jsonl logger, driven through hookgate-core's real dispatcher."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from hookgate import LaneSettings, PluginRegistry, PluginStatus
from hookgate_jsonl import JsonlLogger


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


def test_lines_carry_event_and_hook(hookgate_harness, make_event, tmp_path):
    path = tmp_path / "events.jsonl"
    record = hookgate_harness.add(JsonlLogger(), "jsonl", {"path": str(path)})
    success = make_event()
    failure = make_event("failure")

    hookgate_harness.send(success)
    hookgate_harness.send(failure)
    hookgate_harness.drain()

    assert record.status is PluginStatus.ACTIVE
    lines = read_lines(path)
    assert [line["hook"] for line in lines] == ["log_success", "log_failure"]
    assert [line["call_id"] for line in lines] == [success.call_id, failure.call_id]
    assert lines[0] == {"hook": "log_success", **success.model_dump(mode="json")}
    assert lines[1]["status"] == "failure"
    assert lines[1]["error"]["status_code"] == 502
    assert lines[0]["usage"] == {"prompt_tokens": 21, "completion_tokens": 9, "total_tokens": 30}
    assert lines[0]["start_time"].endswith("Z")


@pytest.mark.parametrize("content", ["a\nb\r\nc", "a\u2028b\u2029c", "a\x85b\x0bc\x1ed", "é ✓ 字"])
def test_line_ends_only_at_event_end(make_event, tmp_path, content):
    path = tmp_path / "events.jsonl"
    plugin = JsonlLogger()
    plugin.logger_setup(name="jsonl", settings={"path": str(path)})

    plugin.log_success(event=make_event(messages=[{"role": "user", "content": content}]))

    text = path.read_text("utf-8")
    assert len(text.splitlines()) == 1
    assert text.endswith("\n")
    assert read_lines(path)[0]["messages"][0]["content"] == content


def test_health_reports_absolute_path(make_event, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    plugin = JsonlLogger()
    plugin.logger_setup(name="jsonl", settings={"path": "logs.jsonl"})

    plugin.log_success(event=make_event())
    plugin.log_failure(event=make_event("failure"))
    health = plugin.logger_health()

    assert health["path"] == str(tmp_path / "logs.jsonl")
    assert health["bytes"] == (tmp_path / "logs.jsonl").stat().st_size
    assert health["lines_written"] == 2
    assert health["rotations"] == 0


def test_path_default_in_working_directory(tmp_path, monkeypatch):
    monkeypatch.delenv("HOOKGATE_JSONL_PATH", raising=False)
    monkeypatch.chdir(tmp_path)
    plugin = JsonlLogger()

    plugin.logger_setup(name="jsonl", settings={})

    assert plugin.logger_health()["path"] == str(tmp_path / "hookgate-events.jsonl")
    assert (tmp_path / "hookgate-events.jsonl").exists()


def test_path_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("HOOKGATE_JSONL_PATH", str(tmp_path / "from-env.jsonl"))
    plugin = JsonlLogger()

    plugin.logger_setup(name="jsonl", settings={})

    assert plugin.logger_health()["path"] == str(tmp_path / "from-env.jsonl")


def test_setting_overrides_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("HOOKGATE_JSONL_PATH", str(tmp_path / "from-env.jsonl"))
    plugin = JsonlLogger()

    plugin.logger_setup(name="jsonl", settings={"path": str(tmp_path / "from-config.jsonl")})

    assert plugin.logger_health()["path"] == str(tmp_path / "from-config.jsonl")
    assert not (tmp_path / "from-env.jsonl").exists()


def test_file_mode_owner_only(tmp_path):
    path = tmp_path / "events.jsonl"
    plugin = JsonlLogger()

    plugin.logger_setup(name="jsonl", settings={"path": str(path)})

    assert path.stat().st_mode & 0o077 == 0


def test_rotation_keeps_backups(hookgate_harness, make_event, tmp_path):
    path = tmp_path / "events.jsonl"
    line_size = len(json.dumps({"hook": "log_success", **make_event().model_dump(mode="json")},
                               ensure_ascii=False, separators=(",", ":"))) + 1
    max_bytes = 3 * line_size + line_size // 2
    plugin = JsonlLogger()
    hookgate_harness.add(plugin, "jsonl",
                         {"path": str(path), "max_bytes": max_bytes, "backups": 2})
    events = [make_event() for _ in range(20)]

    for event in events:
        hookgate_harness.send(event)
    hookgate_harness.drain()

    kept = [path.with_name("events.jsonl.2"), path.with_name("events.jsonl.1"), path]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "events.jsonl", "events.jsonl.1", "events.jsonl.2"]
    for file in kept:
        assert file.stat().st_size <= max_bytes, file
    ids = [line["call_id"] for file in kept for line in read_lines(file)]
    assert ids == [event.call_id for event in events[-len(ids):]]
    assert len(ids) == 8  # 20 events, 3 per file: the current file contains the last 2
    assert plugin.logger_health()["rotations"] == 6


def test_rotation_without_backups(make_event, tmp_path):
    path = tmp_path / "events.jsonl"
    plugin = JsonlLogger()
    plugin.logger_setup(name="jsonl", settings={"path": str(path), "max_bytes": 10,
                                                "backups": 0})

    first, second = make_event(), make_event()
    plugin.log_success(event=first)
    plugin.log_success(event=second)

    assert [p.name for p in tmp_path.iterdir()] == ["events.jsonl"]
    assert [line["call_id"] for line in read_lines(path)] == [second.call_id]


def test_rotation_off_with_zero(make_event, tmp_path):
    path = tmp_path / "events.jsonl"
    plugin = JsonlLogger()
    plugin.logger_setup(name="jsonl", settings={"path": str(path), "max_bytes": 0})

    for _ in range(5):
        plugin.log_success(event=make_event())

    assert [p.name for p in tmp_path.iterdir()] == ["events.jsonl"]
    assert len(read_lines(path)) == 5


def test_oversized_line_alone_in_file(make_event, tmp_path):
    path = tmp_path / "events.jsonl"
    plugin = JsonlLogger()
    plugin.logger_setup(name="jsonl", settings={"path": str(path), "max_bytes": 100,
                                                "backups": 3})
    events = [make_event() for _ in range(3)]

    for event in events:
        plugin.log_success(event=event)

    assert [line["call_id"] for line in read_lines(path)] == [events[2].call_id]
    assert [line["call_id"] for line in read_lines(tmp_path / "events.jsonl.1")] == [
        events[1].call_id]
    assert [line["call_id"] for line in read_lines(tmp_path / "events.jsonl.2")] == [
        events[0].call_id]


def test_concurrent_writers_never_interleave(make_event, tmp_path):
    # Two plugin instances on one file stand for two proxy worker processes: each has
    # its own descriptor, as separate processes would. Large events make a torn
    # write likely if a line were written in more than one piece.
    path = tmp_path / "events.jsonl"
    writers = [JsonlLogger(), JsonlLogger()]
    for writer in writers:
        writer.logger_setup(name="jsonl", settings={"path": str(path), "max_bytes": 0})
    content = "x" * 70_000
    per_thread = 25
    barrier = threading.Barrier(8)

    def run(writer: JsonlLogger, thread_number: int) -> None:
        barrier.wait()
        for index in range(per_thread):
            event = make_event(messages=[{"role": "user", "content": content}],
                               params={"thread": thread_number, "index": index})
            writer.log_success(event=event)

    threads = [threading.Thread(target=run, args=(writers[n % 2], n)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    lines = read_lines(path)
    assert len(lines) == 8 * per_thread
    assert all(line["messages"][0]["content"] == content for line in lines)
    seen = {(line["params"]["thread"], line["params"]["index"]) for line in lines}
    assert len(seen) == 8 * per_thread


def test_concurrent_rotation_loses_nothing(make_event, tmp_path):
    path = tmp_path / "events.jsonl"
    plugin = JsonlLogger()
    plugin.logger_setup(name="jsonl", settings={"path": str(path), "max_bytes": 20_000,
                                                "backups": 1000})

    def run() -> None:
        for _ in range(50):
            plugin.log_success(event=make_event())

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    files = list(tmp_path.iterdir())
    lines = [line for file in files for line in read_lines(file)]
    assert len(lines) == 200
    assert len({line["call_id"] for line in lines}) == 200
    assert all(file.stat().st_size <= 20_000 for file in files)


def test_content_left_out(hookgate_harness, make_event, tmp_path):
    path = tmp_path / "events.jsonl"
    hookgate_harness.add(JsonlLogger(), "jsonl",
                         {"path": str(path), "log_content": False, "required": True},
                         lane=LaneSettings(log_content=False, required=True))

    hookgate_harness.send(make_event())
    hookgate_harness.send(make_event("failure"))
    hookgate_harness.drain()

    text = path.read_text("utf-8")
    lines = read_lines(path)
    assert len(lines) == 2
    assert all(line["messages"] == [] for line in lines)
    assert "choices" not in lines[0]["response"]
    assert lines[0]["usage"]["total_tokens"] == 30
    assert "what llm are you" not in text
    assert "A test model." not in text
    assert "terse assistant" not in text


def test_flush_closes_file(hookgate_harness, make_event, tmp_path):
    path = tmp_path / "events.jsonl"
    plugin = JsonlLogger()
    hookgate_harness.add(plugin, "jsonl", {"path": str(path)})
    hookgate_harness.send(make_event())

    report = hookgate_harness.close()

    assert report.complete
    assert len(read_lines(path)) == 1
    assert plugin.file is not None
    assert not plugin.file.is_open


def test_write_after_flush_reopens(make_event, tmp_path):
    path = tmp_path / "events.jsonl"
    plugin = JsonlLogger()
    plugin.logger_setup(name="jsonl", settings={"path": str(path)})
    plugin.log_success(event=make_event())

    plugin.logger_flush(timeout=1.0)
    plugin.log_success(event=make_event())

    assert len(read_lines(path)) == 2


def test_follows_external_rotation(make_event, tmp_path):
    path = tmp_path / "events.jsonl"
    plugin = JsonlLogger()
    plugin.logger_setup(name="jsonl", settings={"path": str(path)})
    before, after = make_event(), make_event()
    plugin.log_success(event=before)

    os.rename(path, tmp_path / "moved-by-logrotate.jsonl")
    plugin.log_success(event=after)

    assert [line["call_id"] for line in read_lines(path)] == [after.call_id]
    assert plugin.logger_health()["bytes"] == path.stat().st_size


def test_missing_directory_fails_setup(hookgate_harness, tmp_path):
    path = tmp_path / "no-such-dir" / "events.jsonl"

    record = hookgate_harness.add(JsonlLogger(), "jsonl", {"path": str(path)})

    assert record.status is PluginStatus.FAILED
    assert "callback_settings.jsonl.path" in record.error
    assert str(path) in record.error
    assert "No such file or directory" in record.error


def test_path_under_file_fails_setup(tmp_path):
    (tmp_path / "plain-file").write_text("")
    plugin = JsonlLogger()

    with pytest.raises(ValueError, match=r"callback_settings\.audit\.path.*Not a directory"):
        plugin.logger_setup(name="audit", settings={"path": str(tmp_path / "plain-file" / "x")})


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into a read-only directory")
def test_read_only_directory_fails_setup(tmp_path):
    directory = tmp_path / "read-only"
    directory.mkdir(mode=0o500)
    plugin = JsonlLogger()

    try:
        with pytest.raises(ValueError, match=r"callback_settings\.jsonl\.path.*Permission denied"):
            plugin.logger_setup(name="jsonl", settings={"path": str(directory / "events.jsonl")})
    finally:
        directory.chmod(0o700)


def test_entry_point_loads_by_name():
    registry = PluginRegistry(strict=False)

    registry.discover()
    record = registry.load("jsonl")

    assert record.status is PluginStatus.LOADED, record.error
    assert record.distribution == "hookgate-jsonl"
    assert record.module == "hookgate_jsonl:JsonlLogger"
    assert set(record.hooks) == {"log_failure", "log_success", "logger_flush",
                                 "logger_health", "logger_setup"}


def test_two_names_two_files(hookgate_harness, make_event, tmp_path):
    hookgate_harness.add(JsonlLogger(), "audit", {"path": str(tmp_path / "audit.jsonl")})
    hookgate_harness.add(JsonlLogger(), "debug", {"path": str(tmp_path / "debug.jsonl")})
    event = make_event()

    hookgate_harness.send(event, disable=["debug"])
    hookgate_harness.drain()

    assert [line["call_id"] for line in read_lines(tmp_path / "audit.jsonl")] == [event.call_id]
    assert read_lines(tmp_path / "debug.jsonl") == []


WRITER_SCRIPT = """
import sys
from hookgate.testing import make_event
from hookgate_jsonl import JsonlLogger

path, count, tag = sys.argv[1], int(sys.argv[2]), sys.argv[3]
plugin = JsonlLogger()
plugin.logger_setup(name="jsonl", settings={"path": path, "max_bytes": 20_000, "backups": 1000})
for index in range(count):
    plugin.log_success(event=make_event(params={"writer": tag, "index": index}))
plugin.logger_flush(timeout=5.0)
"""


def test_processes_share_rotating_file(tmp_path):
    # Three processes stand for `hookgate serve --workers 3` on one default config.
    path = tmp_path / "events.jsonl"
    script = tmp_path / "writer.py"
    script.write_text(WRITER_SCRIPT)
    count = 150

    processes = [subprocess.Popen([sys.executable, str(script), str(path), str(count), tag])
                 for tag in ("a", "b", "c")]
    for process in processes:
        assert process.wait(timeout=120) == 0

    rotated = sorted(tmp_path.glob("events.jsonl.*"), key=lambda p: -int(p.suffix[1:]))
    lines = [line for file in [*rotated, path] for line in read_lines(file)]
    assert len(lines) == 3 * count
    assert len({(line["params"]["writer"], line["params"]["index"]) for line in lines}) == 3 * count
    longest = max(len(json.dumps(line, separators=(",", ":"))) + 1 for line in lines)
    for file in rotated:
        size = file.stat().st_size
        assert size <= 20_000, file
        # A rotated file smaller than this was rotated twice, once by each of two writers.
        assert size > 20_000 - longest, file
    for tag in ("a", "b", "c"):
        indexes = [line["params"]["index"] for line in lines if line["params"]["writer"] == tag]
        assert indexes == list(range(count))


SIZE_LIMIT_SCRIPT = """
import os, resource, signal, sys
from hookgate.testing import make_event
from hookgate_jsonl import JsonlLogger

# With SIGXFSZ ignored, a write past RLIMIT_FSIZE writes up to the limit, and the
# next write fails with EFBIG: the same partial write as a disk that fills up.
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
path = sys.argv[1]
plugin = JsonlLogger()
plugin.logger_setup(name="jsonl", settings={"path": path, "max_bytes": 0})
plugin.log_success(event=make_event())
size = os.path.getsize(path)
resource.setrlimit(resource.RLIMIT_FSIZE, (size + 200, resource.RLIM_INFINITY))
try:
    plugin.log_success(event=make_event())
except OSError as error:
    print("raised", error.errno, size)
"""


def test_partial_write_removed(tmp_path):
    path = tmp_path / "events.jsonl"
    script = tmp_path / "limited.py"
    script.write_text(SIZE_LIMIT_SCRIPT)

    result = subprocess.run([sys.executable, str(script), str(path)], capture_output=True,
                            text=True, timeout=60)

    assert result.returncode == 0, result.stderr
    outcome, errno_value, size = result.stdout.split()
    assert outcome == "raised"
    assert int(errno_value) == errno.EFBIG
    assert path.stat().st_size == int(size)
    assert len(read_lines(path)) == 1


def test_setup_again_closes_old_file(tmp_path):
    plugin = JsonlLogger()
    plugin.logger_setup(name="jsonl", settings={"path": str(tmp_path / "first.jsonl")})
    first = plugin.file

    plugin.logger_setup(name="jsonl", settings={"path": str(tmp_path / "second.jsonl")})

    assert first is not None
    assert not first.is_open
    assert plugin.logger_health()["path"] == str(tmp_path / "second.jsonl")
