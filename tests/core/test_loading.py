"""Plugin loading against real distributions installed in a throwaway virtual environment."""

from __future__ import annotations

import os

import pytest

BROKEN = ("broken-import", "needs-dep", "unknown-hook", "unknown-param", "async-health",
          "bad-init")


@pytest.fixture(scope="module")
def loaded(plugin_env):
    """Load every throwaway plugin at once, enable `good`, and send it three events."""
    return plugin_env.load_plugins(load=("good", "bomb", *BROKEN), enable=("good",))


def test_discovery_finds_entry_points(plugin_env):
    result = plugin_env.load_plugins()
    for name in ("good", "bomb", "twice", *BROKEN):
        assert result["records"][name]["status"] == "installed", name
    assert result["imported"] == []


def test_discovered_record_names_distribution(plugin_env):
    record = plugin_env.load_plugins()["records"]["good"]
    assert record["distribution"] == "hookgate-good"
    assert record["version"] == "1.0.0"
    assert record["module"] == "hookgate_good:GoodLogger"


def test_good_plugin_receives_events(loaded):
    record = loaded["records"]["good"]
    assert record["status"] == "active"
    assert record["hooks"] == ["log_success"]
    assert record["import_ms"] is not None
    assert loaded["delivered"] == {"good": 3}


def test_module_plugin_loads(plugin_env):
    result = plugin_env.load_plugins(load=("module-style",))
    record = result["records"]["module-style"]
    assert record["status"] == "loaded", record["error"]
    assert record["hooks"] == ["log_failure"]


def test_broken_import_is_reported(loaded):
    record = loaded["records"]["broken-import"]
    assert record["status"] == "failed"
    assert "no_such_function" in record["error"]
    assert "reinstall hookgate-broken-import" in record["error"]


def test_missing_dependency_names_module_and_fix(loaded):
    record = loaded["records"]["needs-dep"]
    assert record["status"] == "failed"
    assert "'hookgate_missing_backend'" in record["error"]
    assert "pip install 'hookgate-missing-backend>=2.1'" in record["error"]


def test_failure_log_names_distribution(loaded):
    lines = [line for line in loaded["log"].splitlines() if "needs-dep" in line]
    assert lines, loaded["log"]
    assert "hookgate-needs-dep 1.0.0" in lines[0]
    assert "hookgate_needs_dep:GoodLogger" in lines[0]
    assert "hookgate_missing_backend" in lines[0]


def test_constructor_error_is_reported(loaded):
    record = loaded["records"]["bad-init"]
    assert record["status"] == "failed"
    assert "creating hookgate_bad_init:GoodLogger() raised KeyError: 'DD_SITE'" in record["error"]
    assert "hookgate-bad-init" in record["error"]


def test_unknown_hook_is_reported(loaded):
    record = loaded["records"]["unknown-hook"]
    assert record["status"] == "failed"
    assert "unknown hook 'log_sucess'" in record["error"]
    assert "log_success" in record["error"]


def test_unknown_parameter_is_reported(loaded):
    record = loaded["records"]["unknown-param"]
    assert record["status"] == "failed"
    assert "GoodLogger.log_success(event, request)" in record["error"]
    assert "asks for 'request'" in record["error"]
    assert "(it passes: event)" in record["error"]


def test_async_sync_only_hook_is_reported(loaded):
    record = loaded["records"]["async-health"]
    assert record["status"] == "failed"
    assert "async" in record["error"]
    assert "logger_health" in record["error"]


def test_failed_plugins_leave_no_hooks(loaded):
    for name in BROKEN:
        assert loaded["records"][name]["hooks"] == [], name


def test_import_error_at_import_is_reported(loaded):
    record = loaded["records"]["bomb"]
    assert record["status"] == "failed"
    assert "RuntimeError: hookgate_bomb was imported" in record["error"]


@pytest.mark.parametrize("name", BROKEN)
def test_strict_mode_fails(plugin_env, name):
    process = plugin_env.run(LOAD_ONE, name, env={"HOOKGATE_STRICT_PLUGINS": "1"})
    assert process.returncode != 0
    assert "PluginLoadError" in process.stderr
    assert f"plugin {name!r} failed" in process.stderr


def test_strict_mode_loads_good_plugin(plugin_env):
    process = plugin_env.run(LOAD_ONE, "good", env={"HOOKGATE_STRICT_PLUGINS": "1"})
    assert process.returncode == 0, process.stderr
    assert process.stdout.strip() == "loaded"


def test_blocked_env_skips_import(plugin_env):
    result = plugin_env.load_plugins(load=("bomb", "good"), enable=("good",),
                                     env={"HOOKGATE_BLOCKED_PLUGINS": "Bomb, other"})
    assert result["records"]["bomb"]["status"] == "blocked"
    assert "hookgate_bomb" not in result["imported"]
    assert result["delivered"] == {"good": 3}


def test_blocked_argument_skips_import(plugin_env):
    result = plugin_env.load_plugins(load=("bomb", "good"), blocked=("bomb",))
    assert result["records"]["bomb"]["status"] == "blocked"
    assert "hookgate_bomb" not in result["imported"]
    assert result["records"]["good"]["status"] == "loaded"


def test_name_conflict_names_both(conflict_env):
    result = conflict_env.load_plugins(load=("audit", "good"), enable=("good",))
    record = result["records"]["audit"]
    assert record["status"] == "conflict"
    assert "hookgate-audit-one 1.2.0 (audit_one:GoodLogger)" in record["error"]
    assert "hookgate-audit-two 0.3.0 (audit_two:GoodLogger)" in record["error"]


def test_name_conflict_loads_neither(conflict_env):
    result = conflict_env.load_plugins(load=("audit", "good"), enable=("good",))
    assert result["records"]["audit"]["hooks"] == []
    assert "audit_one" not in result["imported"]
    assert "audit_two" not in result["imported"]
    assert result["delivered"] == {"good": 3}


def test_strict_mode_fails_on_conflict(conflict_env):
    process = conflict_env.run(LOAD_ONE, "good", env={"HOOKGATE_STRICT_PLUGINS": "1"})
    assert process.returncode != 0
    assert "PluginLoadError: plugin 'audit' conflict" in process.stderr
    assert "hookgate-audit-one" in process.stderr
    assert "hookgate-audit-two" in process.stderr


def test_blocked_conflict_passes_strict_mode(conflict_env):
    env = {"HOOKGATE_STRICT_PLUGINS": "1", "HOOKGATE_BLOCKED_PLUGINS": "audit"}
    result = conflict_env.load_plugins(load=("audit", "good"), enable=("good",), env=env)
    record = result["records"]["audit"]
    assert record["status"] == "blocked"
    assert "hookgate-audit-one" in record["error"]
    assert "hookgate-audit-two" in record["error"]
    assert result["delivered"] == {"good": 3}


def test_same_distribution_twice_is_no_conflict(conflict_env, tmp_path):
    # A second path entry that leads to the same site-packages, as a symlinked
    # site-packages or an editable install beside a regular one does.
    mirror = tmp_path / "mirror"
    os.symlink(conflict_env.site_packages, mirror, target_is_directory=True)
    process = conflict_env.run(FIND_SCRIPT, "twice", env={"PYTHONPATH": str(mirror)})
    assert process.returncode == 0, process.stderr
    assert process.stdout.count("hookgate_twice:GoodLogger") >= 2

    result = conflict_env.load_plugins(load=("twice",), enable=("twice",),
                                       env={"PYTHONPATH": str(mirror)})
    assert result["records"]["twice"]["status"] == "active"
    assert result["records"]["twice"]["distribution"] == "hookgate-twice"
    assert result["delivered"] == {"twice": 3}


def test_python_registration_shadows_entry_point(plugin_env):
    process = plugin_env.run(SHADOW_SCRIPT)
    assert process.returncode == 0, process.stderr
    assert process.stdout.split() == ["None", "log_success"]
    assert "entry point in hookgate-good is ignored" in process.stderr


# Loads one plugin with the environment's HOOKGATE_STRICT_PLUGINS setting.
LOAD_ONE = """
import sys
from hookgate import PluginRegistry

registry = PluginRegistry()
registry.discover()
registry.load(sys.argv[1])
print("loaded")
"""

# Prints every distribution on sys.path that declares entry point argv[1], with
# duplicates, to prove that the mirror path really shows one distribution twice.
FIND_SCRIPT = """
import sys
from importlib.metadata import distributions

for dist in distributions():
    for entry_point in dist.entry_points:
        if entry_point.group == "hookgate.callbacks" and entry_point.name == sys.argv[1]:
            print(dist.metadata["Name"], entry_point.value)
"""


# Registers an in-house logger under `good`, the name that hookgate-good declares,
# then discovers: the installed one must be named in a warning, not silently dropped.
SHADOW_SCRIPT = """
import logging
from hookgate import PluginRegistry
from hookgate.testing import RecordingLogger

logging.basicConfig(level=logging.WARNING)
registry = PluginRegistry()
registry.register(RecordingLogger(), "good")
registry.discover()
record = registry.record("good")
print(record.distribution, registry.hook_call("good", "log_success").hook_name)
"""
