"""Generate a ready-to-install package for an in-house logger plugin.

`hookgate plugin new NAME [--dir DIR]` calls `create_plugin_package`. The package
it writes installs with pip, registers the entry point `NAME` in the group
`hookgate.callbacks`, and carries a test that passes once it is installed. The
files come from the templates in `scaffold_templates/`.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import re
import shutil
import string
import uuid
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from hookgate.plugins import ENTRY_POINT_GROUP, NAME_PATTERN

__all__ = [
    "InvalidPluginName",
    "PackageExists",
    "PluginNames",
    "ScaffoldError",
    "create_plugin_package",
    "plugin_names",
]

logger = logging.getLogger(__name__)

TEMPLATE_FOLDER = "scaffold_templates"

# A generated package named after these would be a second hookgate-core or
# hookgate-proxy, and installing it would replace the real one.
RESERVED_NAMES = frozenset({"core", "proxy"})

# A package name must end with a letter or digit (the "Names and normalization"
# specification at packaging.python.org), which NAME_PATTERN alone does not require.
DISTRIBUTION_END = re.compile(r"[a-z0-9]$")


class ScaffoldError(Exception):
    """The package cannot be generated; the message states why and what to do."""


class InvalidPluginName(ScaffoldError, ValueError):
    """The plugin name is invalid, reserved, or already taken by an installed plugin."""


class PackageExists(ScaffoldError, FileExistsError):
    """The target folder already exists; nothing was written."""


@dataclass(frozen=True)
class PluginNames:
    """The names of one plugin, derived from its entry-point name."""

    name: str
    """Entry-point name: the plugin's name in the config, the listing and the header."""
    distribution: str
    """Package name for pip, `hookgate-<name>`; also the folder name."""
    module: str
    """Import name, `hookgate_<name>` with every `-` made `_`."""
    class_name: str
    """Plugin class, the name in CamelCase followed by `Logger`."""


def plugin_names(name: str) -> PluginNames:
    """Validate a plugin name and derive its package, module and class names.

    Raises InvalidPluginName if the name does not match `NAME_PATTERN`, does not end
    with a letter or digit, or is reserved for hookgate's own packages.
    """
    if not NAME_PATTERN.match(name):
        raise InvalidPluginName(
            f"invalid plugin name {name!r}: a name is 1 to 64 characters of lowercase "
            "letters, digits, '_' and '-', starting with a letter (for example 'team_audit')"
        )
    if not DISTRIBUTION_END.search(name):
        raise InvalidPluginName(
            f"invalid plugin name {name!r}: it must end with a letter or digit, because "
            f"pip rejects the package name 'hookgate-{name}'"
        )
    if name in RESERVED_NAMES:
        raise InvalidPluginName(
            f"invalid plugin name {name!r}: 'hookgate-{name}' is part of hookgate itself; "
            "choose another name"
        )

    words = [word for word in re.split(r"[-_]", name) if word]
    return PluginNames(
        name=name,
        distribution=f"hookgate-{name}",
        module="hookgate_" + name.replace("-", "_"),
        class_name="".join(word.capitalize() for word in words) + "Logger",
    )


def create_plugin_package(name: str, directory: Path) -> Path:
    """Write a new plugin package to `directory/hookgate-<name>/` and return that path.

    Creates `directory` if needed. Raises InvalidPluginName for an invalid or
    reserved name, for a name whose package is already installed, and for one that
    an installed distribution declares as a `hookgate.callbacks` entry point, since
    two claimants would both fail to load.
    Raises PackageExists if the target folder exists. The files are written to a
    temporary folder that is renamed into place last, so a failure leaves no
    half-written package behind.
    """
    names = plugin_names(name)
    target = Path(directory) / names.distribution
    if target.exists() or target.is_symlink():
        raise PackageExists(f"{target} already exists; remove it or choose another "
                            "directory with --dir")
    _reject_installed_name(names)

    rendered = _render(names)

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{names.distribution}.{uuid.uuid4().hex[:8]}.tmp")
    staging.mkdir()
    try:
        for relative, text in rendered.items():
            path = staging / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        _move_into_place(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise

    logger.info("created plugin package %s for plugin %s at %s", names.distribution,
                names.name, target)
    return target


def _reject_installed_name(names: PluginNames) -> None:
    # pip treats '-' and '_' alike in package names, so 'team_audit' would replace an
    # installed hookgate-team-audit even though the plugin names differ.
    try:
        installed = importlib.metadata.distribution(names.distribution)
    except importlib.metadata.PackageNotFoundError:
        pass
    else:
        raise InvalidPluginName(
            f"invalid plugin name {names.name!r}: the distribution "
            f"{installed.metadata['Name']} {installed.version} is already installed, and "
            f"installing {names.distribution} would replace it; choose another name"
        )

    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if entry_point.name != names.name:
            continue
        dist = getattr(entry_point, "dist", None)
        owner = f"{dist.metadata['Name']} {dist.version}" if dist is not None else "a package"
        raise InvalidPluginName(
            f"plugin name {names.name!r} is already declared by the installed distribution "
            f"{owner}; two distributions with one name are a conflict and neither loads, so "
            "choose another name"
        )


def _render(names: PluginNames) -> dict[str, str]:
    values = {
        "name": names.name,
        "distribution": names.distribution,
        "module": names.module,
        "class_name": names.class_name,
        "core_version": _core_version(),
    }
    layout = {
        "pyproject.toml": "pyproject.toml.tmpl",
        "README.md": "README.md.tmpl",
        f"src/{names.module}/__init__.py": "module.py.tmpl",
        f"tests/test_{names.module.removeprefix('hookgate_')}.py": "test_plugin.py.tmpl",
    }
    templates = files("hookgate_proxy").joinpath(TEMPLATE_FOLDER)
    return {
        relative: string.Template(templates.joinpath(template).read_text("utf-8"))
        .substitute(values)
        for relative, template in layout.items()
    }


def _core_version() -> str:
    # Require the hookgate-core release series this proxy runs with: the test kit
    # fixtures the generated tests use are part of it.
    try:
        version = importlib.metadata.version("hookgate-core")
    except importlib.metadata.PackageNotFoundError:
        return "0.1"
    major, _, rest = version.partition(".")
    minor = rest.partition(".")[0]
    return f"{major}.{minor}" if minor.isdigit() else major


def _move_into_place(staging: Path, target: Path) -> None:
    # os.rename replaces an empty directory on POSIX, so check once more just before.
    if target.exists() or target.is_symlink():
        raise PackageExists(f"{target} already exists; remove it or choose another "
                            "directory with --dir")
    os.rename(staging, target)
