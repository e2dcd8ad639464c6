"""The plugin scaffold: name checks, derived names and the generated files."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from hookgate_proxy.scaffold import (
    InvalidPluginName,
    PackageExists,
    create_plugin_package,
    plugin_names,
)

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

INVALID_NAMES = [
    ("", "invalid plugin name ''"),
    ("Audit", "lowercase"),
    ("1audit", "starting with a letter"),
    ("team audit", "invalid plugin name 'team audit'"),
    ("team.audit", "invalid plugin name 'team.audit'"),
    ("a" * 65, "1 to 64 characters"),
    ("audit-", "must end with a letter or digit"),
    ("audit_", "must end with a letter or digit"),
    ("core", "part of hookgate itself"),
    ("proxy", "part of hookgate itself"),
]

DERIVED_NAMES = [
    ("audit", "hookgate-audit", "hookgate_audit", "AuditLogger"),
    ("team_audit", "hookgate-team_audit", "hookgate_team_audit", "TeamAuditLogger"),
    ("team-audit", "hookgate-team-audit", "hookgate_team_audit", "TeamAuditLogger"),
    ("s3-v2", "hookgate-s3-v2", "hookgate_s3_v2", "S3V2Logger"),
]


@pytest.mark.parametrize(("name", "message"), INVALID_NAMES)
def test_invalid_name_rejected(name, message, tmp_path):
    with pytest.raises(InvalidPluginName, match=re.escape(message)):
        create_plugin_package(name, tmp_path)

    assert list(tmp_path.iterdir()) == []


def _install_metadata(site: Path, distribution: str, entry_points: str = "") -> None:
    """Write the metadata of an installed distribution into `site`, as pip would."""
    info = site / f"{distribution.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {distribution}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(entry_points)


def test_installed_package_rejected(tmp_path):
    # hookgate-jsonl is a dependency of the proxy, so it is installed wherever this runs.
    with pytest.raises(InvalidPluginName, match=r"hookgate-jsonl \S+ is already installed"):
        create_plugin_package("jsonl", tmp_path)

    assert list(tmp_path.iterdir()) == []


def test_normalized_package_rejected(tmp_path, monkeypatch):
    _install_metadata(tmp_path / "site", "hookgate-team_audit")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))

    with pytest.raises(InvalidPluginName, match="would replace it"):
        create_plugin_package("team-audit", tmp_path / "out")

    assert not (tmp_path / "out").exists()


def test_claimed_entry_point_rejected(tmp_path, monkeypatch):
    _install_metadata(tmp_path / "site", "acme-loggers",
                      "[hookgate.callbacks]\naudit = acme_loggers:Audit\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))

    with pytest.raises(InvalidPluginName, match=r"already declared by .*acme-loggers 1\.0"):
        create_plugin_package("audit", tmp_path / "out")

    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("name", "distribution", "module", "class_name"), DERIVED_NAMES)
def test_names_derived(name, distribution, module, class_name):
    names = plugin_names(name)

    assert names.name == name
    assert names.distribution == distribution
    assert names.module == module
    assert names.class_name == class_name


def test_existing_folder_rejected(tmp_path):
    existing = tmp_path / "hookgate-audit"
    existing.mkdir()
    (existing / "notes.txt").write_text("keep me")

    with pytest.raises(PackageExists, match="hookgate-audit already exists"):
        create_plugin_package("audit", tmp_path)

    assert sorted(p.name for p in tmp_path.iterdir()) == ["hookgate-audit"]
    assert [p.name for p in existing.iterdir()] == ["notes.txt"]
    assert (existing / "notes.txt").read_text() == "keep me"


def test_existing_folder_raises_file_exists(tmp_path):
    create_plugin_package("audit", tmp_path)

    with pytest.raises(FileExistsError):
        create_plugin_package("audit", tmp_path)


def test_generated_files(tmp_path):
    package = create_plugin_package("team-audit", tmp_path / "new" / "dir")

    assert package == tmp_path / "new" / "dir" / "hookgate-team-audit"
    files = sorted(str(p.relative_to(package)) for p in package.rglob("*") if p.is_file())
    assert files == [
        "README.md",
        "pyproject.toml",
        "src/hookgate_team_audit/__init__.py",
        "tests/test_team_audit.py",
    ]
    assert sorted(p.name for p in package.parent.iterdir()) == ["hookgate-team-audit"]


def test_pyproject_declares_entry_point(tmp_path):
    package = create_plugin_package("team-audit", tmp_path)

    project = tomllib.loads((package / "pyproject.toml").read_text())["project"]

    assert project["name"] == "hookgate-team-audit"
    assert project["entry-points"]["hookgate.callbacks"] == {
        "team-audit": "hookgate_team_audit:TeamAuditLogger"}
    assert any(dep.startswith("hookgate-core>=") for dep in project["dependencies"])
    assert "pytest>=8" in project["optional-dependencies"]["test"]


def test_module_implements_hooks(tmp_path):
    package = create_plugin_package("team-audit", tmp_path)
    source = (package / "src" / "hookgate_team_audit" / "__init__.py").read_text()

    tree = ast.parse(source)

    classes = [node for node in tree.body if isinstance(node, ast.ClassDef)]
    assert [node.name for node in classes] == ["TeamAuditLogger"]
    hooks = {item.name for item in classes[0].body if isinstance(item, ast.FunctionDef)
             and any(ast.unparse(d) == "hookimpl" for d in item.decorator_list)}
    assert hooks == {"logger_setup", "log_success", "log_failure", "logger_flush"}


def test_template_left_no_placeholder(tmp_path):
    package = create_plugin_package("team-audit", tmp_path)

    for path in package.rglob("*"):
        if path.is_file():
            assert "${" not in path.read_text(), path
