"""Validation of `callback_settings.jsonl`."""

from __future__ import annotations

import pytest

from hookgate_jsonl import parse_settings
from hookgate_jsonl.settings import DEFAULT_BACKUPS, DEFAULT_MAX_BYTES

INVALID = [
    ({"max_bytes": -1}, r"callback_settings\.jsonl\.max_bytes: invalid value -1"),
    ({"max_bytes": "100MB"}, r"callback_settings\.jsonl\.max_bytes: invalid value '100MB'"),
    ({"max_bytes": 1.5}, r"callback_settings\.jsonl\.max_bytes: invalid value 1\.5"),
    ({"max_bytes": True}, r"callback_settings\.jsonl\.max_bytes: invalid value True"),
    ({"backups": -3}, r"callback_settings\.jsonl\.backups: invalid value -3"),
    ({"backups": None}, r"callback_settings\.jsonl\.backups: invalid value None"),
    ({"path": ""}, r"callback_settings\.jsonl\.path: invalid value ''"),
    ({"path": 7}, r"callback_settings\.jsonl\.path: invalid value 7"),
    ({"max_byte": 10}, r"callback_settings\.jsonl: unknown keys 'max_byte'"),
    ({"success": False}, r"callback_settings\.jsonl: unknown keys 'success'"),
]


@pytest.mark.parametrize(("settings", "message"), INVALID)
def test_invalid_setting_rejected(settings, message, tmp_path):
    settings = {"path": str(tmp_path / "events.jsonl"), **settings}

    with pytest.raises(ValueError, match=message):
        parse_settings("jsonl", settings)


def test_directory_as_path_rejected(tmp_path):
    with pytest.raises(ValueError, match=r"callback_settings\.jsonl\.path: .* is a directory"):
        parse_settings("jsonl", {"path": str(tmp_path)})


def test_defaults(tmp_path, monkeypatch):
    monkeypatch.delenv("HOOKGATE_JSONL_PATH", raising=False)
    monkeypatch.chdir(tmp_path)

    settings = parse_settings("jsonl", {})

    assert settings.path == tmp_path / "hookgate-events.jsonl"
    assert settings.max_bytes == DEFAULT_MAX_BYTES == 100 * 1024 * 1024
    assert settings.backups == DEFAULT_BACKUPS


def test_core_keys_accepted(tmp_path):
    settings = parse_settings("jsonl", {
        "path": str(tmp_path / "events.jsonl"),
        "required": True,
        "log_content": False,
    })

    assert settings.path == tmp_path / "events.jsonl"


def test_home_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))

    settings = parse_settings("jsonl", {"path": "~/events.jsonl"})

    assert settings.path == tmp_path / "events.jsonl"


def test_message_names_plugin(tmp_path):
    with pytest.raises(ValueError, match=r"callback_settings\.audit\.backups"):
        parse_settings("audit", {"path": str(tmp_path / "a.jsonl"), "backups": -1})
