"""Test, lint and type-check sessions for every package in the workspace.

`nox` with no arguments runs `tests`: one virtual environment with every member
installed, and pytest over tests/ and each plugin's tests. The `plugin-<name>`
sessions test one plugin package on its own; they are generated from
plugins/*/pyproject.toml, so a new plugin needs no edit here.
"""

from __future__ import annotations

from pathlib import Path

import nox

ROOT = Path(__file__).parent
PLUGINS = sorted(path.parent for path in ROOT.glob("plugins/*/pyproject.toml"))

# What the tests need beyond the packages and their own `[test]` extras: pytest
# with asyncio support, the real OpenAI SDK as a client, and hatchling so that tests
# can build throwaway plugin packages without a network (no build isolation).
TEST_REQUIREMENTS = [
    "pytest>=8",
    "pytest-asyncio>=0.23",
    "openai>=1.40",
    "build>=1.0",
    "hatchling>=1.21",
    "pyyaml>=6",
    "httpx>=0.27",
]

nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True


def _members() -> list[str]:
    members = [str(ROOT / "core")]
    if (ROOT / "proxy" / "pyproject.toml").exists():
        members.append(str(ROOT / "proxy"))
    members.extend(str(path) for path in PLUGINS)
    return members


def _install_editable(session: nox.Session, paths: list[str]) -> None:
    """Install each member editable with its `[test]` extra (pip ignores a missing extra)."""
    arguments: list[str] = []
    for path in paths:
        arguments += ["-e", f"{path}[test]"]
    session.install(*arguments)


@nox.session
def tests(session: nox.Session) -> None:
    """Run every test of every package in one environment."""
    session.install(*TEST_REQUIREMENTS)
    _install_editable(session, _members())
    session.run("pytest", *session.posargs)


def _plugin_session(plugin: Path) -> None:
    @nox.session(name=f"plugin-{plugin.name}", default=False)
    def run(session: nox.Session) -> None:
        session.install(*TEST_REQUIREMENTS)
        # The proxy depends on hookgate-jsonl, which is not on PyPI: install it from
        # here too, or pip would try to fetch it.
        paths = [str(ROOT / "core")]
        if (ROOT / "proxy" / "pyproject.toml").exists():
            paths += [str(ROOT / "plugins" / "jsonl"), str(ROOT / "proxy")]
        paths += [str(plugin)] if str(plugin) not in paths else []
        _install_editable(session, paths)
        session.run("pytest", str(plugin / "tests"), *session.posargs)

    run.__doc__ = f"Test the {plugin.name} plugin package on its own."


for _plugin in PLUGINS:
    _plugin_session(_plugin)


@nox.session(default=False)
def lint(session: nox.Session) -> None:
    """Check style and common bugs with ruff."""
    session.install("ruff")
    session.run("ruff", "check", ".", *session.posargs)


@nox.session(default=False)
def typecheck(session: nox.Session) -> None:
    """Type-check the core and the proxy with mypy."""
    session.install("mypy", "types-PyYAML")
    _install_editable(session, _members())
    session.run("mypy", "core/src", *(["proxy/src"] if (ROOT / "proxy").exists() else []))
