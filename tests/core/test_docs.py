"""The docs under docs/ checked against the code, so that they cannot drift from it."""

from __future__ import annotations

import ast
import inspect
import re
import subprocess
from pathlib import Path

import pytest

from hookgate import CallEvent, ErrorInfo, PluginRegistry, RequestMetadata, Usage, hookspecs
from hookgate.plugins import HOOK_PARAMETERS

DOCS = Path(__file__).resolve().parents[2] / "docs"
HOOK_HEADING = re.compile(r"^## `(\w+)`$", re.MULTILINE)
PYTHON_BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)
FILE_BLOCK = re.compile(r"^File `([^`]+)`:\n\n```\w+\n(.*?)```", re.DOTALL | re.MULTILINE)
TABLE_ROW = re.compile(r"^\| `(\w+)` \| `((?:[^`\\]|\\.)+)` \| (.+) \|$", re.MULTILINE)


def hook_sections() -> dict[str, str]:
    text = (DOCS / "hooks.md").read_text()
    parts = HOOK_HEADING.split(text)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def spec_function(name: str) -> ast.FunctionDef:
    tree = ast.parse(inspect.getsource(getattr(hookspecs, name)))
    return tree.body[0]


def documented_function(name: str, section: str) -> ast.FunctionDef:
    signature = PYTHON_BLOCK.search(section)
    assert signature, f"docs/hooks.md: section {name!r} has no python signature block"
    tree = ast.parse(signature.group(1))
    assert isinstance(tree.body[0], ast.FunctionDef), signature.group(1)
    return tree.body[0]


# docs/hooks.md


def test_every_hook_documented():
    assert sorted(hook_sections()) == sorted(HOOK_PARAMETERS)


@pytest.mark.parametrize("name", sorted(HOOK_PARAMETERS))
def test_hook_signature_matches_spec(name):
    documented = documented_function(name, hook_sections()[name])
    spec = spec_function(name)

    assert documented.name == name
    assert ast.unparse(documented.args) == ast.unparse(spec.args)
    assert ast.unparse(documented.returns) == ast.unparse(spec.returns)


@pytest.mark.parametrize("name", sorted(HOOK_PARAMETERS))
def test_hook_section_complete(name):
    section = hook_sections()[name]
    assert "**When it fires:**" in section
    assert "**Sync or async:**" in section
    assert "**Example:**" in section
    for parameter in HOOK_PARAMETERS[name]:
        assert f"- `{parameter}` (" in section, parameter


@pytest.mark.parametrize("name", sorted(HOOK_PARAMETERS))
def test_hook_example_registers(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # an example may create files
    [_, example] = PYTHON_BLOCK.findall(hook_sections()[name])
    namespace: dict[str, object] = {"__name__": f"hooks_md_{name}"}
    exec(compile(example, f"docs/hooks.md#{name}", "exec"), namespace)
    plugin_classes = [value for value in namespace.values()
                      if inspect.isclass(value) and value.__module__ == f"hooks_md_{name}"]
    assert plugin_classes, "the example defines no plugin class"

    registry = PluginRegistry(strict=True)
    for index, plugin_class in enumerate(plugin_classes):
        record = registry.register(plugin_class(), f"example-{index}")
        assert name in record.hooks


# docs/event-model.md


def model_tables() -> dict[str, dict[str, str]]:
    text = (DOCS / "event-model.md").read_text()
    tables = {}
    for section in re.split(r"^## ", text, flags=re.MULTILINE)[1:]:
        title = section.splitlines()[0].strip("`")
        tables[title] = {field: kind.replace("\\|", "|")
                         for field, kind, _ in TABLE_ROW.findall(section)}
    return tables


@pytest.mark.parametrize("model", [CallEvent, Usage, ErrorInfo, RequestMetadata],
                         ids=lambda model: model.__name__)
def test_every_model_field_documented(model):
    documented = model_tables()[model.__name__]
    expected = {name: model.__annotations__[name] for name in model.model_fields}
    assert documented == expected


# docs/writing-a-logger.md


def test_logger_guide_package_passes(tmp_path, packaging_tools):
    tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11")
    project = tmp_path / "acme-audit"
    files = dict(FILE_BLOCK.findall((DOCS / "writing-a-logger.md").read_text()))
    assert sorted(files) == ["pyproject.toml", "src/acme_audit/__init__.py",
                             "tests/test_audit.py"]
    for path, text in files.items():
        (project / path).parent.mkdir(parents=True, exist_ok=True)
        (project / path).write_text(text)

    metadata = tomllib.loads(files["pyproject.toml"])["project"]
    distribution = packaging_tools.Distribution(
        metadata["name"],
        {path.removeprefix("src/"): text for path, text in files.items()
         if path.startswith("src/")},
        metadata["entry-points"]["hookgate.callbacks"],
        version=metadata["version"],
        requires=metadata["dependencies"],
    )
    environment = packaging_tools.VirtualEnvironment.create(tmp_path / "venv")
    environment.install([distribution.build_wheel(tmp_path)])

    process = subprocess.run(
        [environment.python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=project, capture_output=True, text=True, timeout=120,
    )

    assert process.returncode == 0, process.stdout + process.stderr
    assert "3 passed" in process.stdout
