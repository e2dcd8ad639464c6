"""`hookgate plugin new NAME [--dir DIR]`, run as a real command."""

from __future__ import annotations

import subprocess
import sys


def run_hookgate(*arguments: str, cwd) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hookgate_proxy", *arguments],
                          capture_output=True, text=True, cwd=cwd, timeout=60)


def test_creates_package_in_dir(tmp_path):
    result = run_hookgate("plugin", "new", "team-audit", "--dir", str(tmp_path / "out"),
                          cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    package = tmp_path / "out" / "hookgate-team-audit"
    assert str(package) in result.stdout
    assert (package / "pyproject.toml").is_file()
    assert (package / "src" / "hookgate_team_audit" / "__init__.py").is_file()


def test_creates_package_in_working_directory(tmp_path):
    result = run_hookgate("plugin", "new", "audit", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert (tmp_path / "hookgate-audit" / "tests" / "test_audit.py").is_file()


def test_invalid_name_exits_with_message(tmp_path):
    result = run_hookgate("plugin", "new", "Team Audit", cwd=tmp_path)

    assert result.returncode == 1
    assert "invalid plugin name 'Team Audit'" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_existing_folder_exits_with_message(tmp_path):
    (tmp_path / "hookgate-audit").mkdir()

    result = run_hookgate("plugin", "new", "audit", cwd=tmp_path)

    assert result.returncode == 1
    assert "hookgate-audit already exists" in result.stderr
    assert list((tmp_path / "hookgate-audit").iterdir()) == []
