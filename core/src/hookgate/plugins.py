"""Plugin loading: find logger plugins, load each in isolation, and keep a record of each.

A plugin is found through an entry point in the group `hookgate.callbacks`, or
registered from Python under an explicit name. The entry-point name is the plugin's
one name everywhere: in the `x-litellm-disable-callbacks` header, `/callbacks/list`,
the config, logs and the CLI.

Loading never takes the host down. A plugin whose import fails, whose dependency is
missing or whose hooks do not validate is rolled back and recorded as failed, with a
message that says how to fix it. Set `HOOKGATE_STRICT_PLUGINS=1` (for CI) to turn
every such failure into a `PluginLoadError` instead.
"""

from __future__ import annotations

import asyncio
import enum
import importlib.metadata
import inspect
import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import pluggy

from hookgate import hookspecs
from hookgate.hookspecs import PROJECT_NAME

__all__ = [
    "ENTRY_POINT_GROUP",
    "NAME_PATTERN",
    "NotConfigured",
    "PluginLoadError",
    "PluginRecord",
    "PluginRegistry",
    "PluginStatus",
]

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "hookgate.callbacks"
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
STRICT_ENV = "HOOKGATE_STRICT_PLUGINS"
BLOCKED_ENV = "HOOKGATE_BLOCKED_PLUGINS"

# Hooks that run inline (not in the plugin's worker), so they cannot be coroutines.
SYNC_ONLY_HOOKS = frozenset({"logger_health", "logger_routes"})


class PluginStatus(str, enum.Enum):
    """Where a plugin stands. The value is what listings and the CLI show."""

    INSTALLED = "installed"
    """Found by its entry point, not loaded because no config enables it."""
    LOADED = "loaded"
    """Imported and validated, not yet set up."""
    ACTIVE = "active"
    """Set up and receiving events."""
    NOT_CONFIGURED = "not configured"
    """Loaded, but `logger_setup` reported a missing setting."""
    FAILED = "failed"
    """Import, validation or setup failed; see `error`."""
    CONFLICT = "conflict"
    """Two distributions claim the same name; neither was loaded."""
    BLOCKED = "blocked"
    """Skipped before import because the config or HOOKGATE_BLOCKED_PLUGINS names it."""


class PluginLoadError(RuntimeError):
    """A plugin failed to load in strict mode, or a Python registration was invalid."""


class NotConfigured(Exception):
    """Raised by `logger_setup` when a required setting is missing.

    The message says which setting and how to provide it, for example
    "missing DD_API_KEY: set callback_settings.datadog.api_key or DD_API_KEY".
    """


@dataclass
class PluginRecord:
    """Everything known about one plugin, as the admin listing and the CLI show it."""

    name: str
    distribution: str | None = None
    """Distribution that declares the entry point; None for a Python registration."""
    version: str | None = None
    module: str | None = None
    """Entry point value (`module` or `module:object`), or the object's module."""
    hooks: tuple[str, ...] = ()
    status: PluginStatus = PluginStatus.INSTALLED
    error: str | None = None
    """Why the plugin is failed, in conflict, blocked or not configured, and the fix."""
    import_ms: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "module": self.module,
            "hooks": list(self.hooks),
            "status": self.status.value,
            "error": self.error,
            "import_ms": None if self.import_ms is None else round(self.import_ms, 2),
        }


@dataclass(frozen=True)
class HookCall:
    """One plugin's implementation of one hook, ready to call with keyword arguments."""

    plugin_name: str
    hook_name: str
    function: Callable[..., Any]
    argnames: tuple[str, ...]
    is_async: bool

    def bind(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """Return the keyword arguments this implementation asks for."""
        return {name: arguments[name] for name in self.argnames}


@dataclass
class _Candidate:
    name: str
    entry_points: list[importlib.metadata.EntryPoint] = field(default_factory=list)


def _hook_parameters() -> Mapping[str, tuple[str, ...]]:
    specs = {}
    for hook_name in hookspecs.__all__:
        function = getattr(hookspecs, hook_name)
        if callable(function) and hasattr(function, PROJECT_NAME + "_spec"):
            specs[hook_name] = tuple(inspect.signature(function).parameters)
    return MappingProxyType(specs)


HOOK_PARAMETERS = _hook_parameters()


def _distribution_of(entry_point: importlib.metadata.EntryPoint) -> tuple[str | None, str | None]:
    dist = getattr(entry_point, "dist", None)
    if dist is None:
        return None, None
    return dist.metadata["Name"], dist.version


def _declared_requirement(entry_point: importlib.metadata.EntryPoint,
                          module: str) -> str | None:
    """Return the entry point's distribution's requirement named like `module`, if any.

    Matches names the way distribution names are compared (case, '-', '_' and '.'
    ignored), so module `yaml` does not match `PyYAML`; that case gets the generic fix.
    """
    dist: importlib.metadata.Distribution | None = getattr(entry_point, "dist", None)
    requirements = (dist.requires or []) if dist is not None else []
    for requirement in requirements:
        specification = requirement.split(";")[0].strip()
        match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", specification)
        if match and _normalize(match.group()) == _normalize(module):
            return specification
    return None


def _normalize(distribution: str | None) -> str:
    return re.sub(r"[-_.]+", "-", distribution or "").lower()


def _env_names(variable: str) -> set[str]:
    items = os.environ.get(variable, "").split(",")
    return {item.strip().lower() for item in items if item.strip()}


def strict_mode() -> bool:
    """Return True if HOOKGATE_STRICT_PLUGINS asks to fail on any plugin load failure."""
    return os.environ.get(STRICT_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


class PluginRegistry:
    """The plugins of one application: one pluggy manager and one record per plugin.

    Nothing is loaded when it is built; call `discover`, then `load` for the names
    the config enables (or `load_all`), and `register` for plugins in the same
    codebase. Tests build their own registry.
    """

    def __init__(self, *, blocked: Iterable[str] = (), strict: bool | None = None) -> None:
        self.manager = pluggy.PluginManager(PROJECT_NAME)
        self.manager.add_hookspecs(hookspecs)
        self.blocked = {name.lower() for name in blocked} | _env_names(BLOCKED_ENV)
        self.strict = strict_mode() if strict is None else strict
        self._records: dict[str, PluginRecord] = {}
        self._candidates: dict[str, _Candidate] = {}
        self._calls: dict[str, dict[str, HookCall]] = {}
        self._registered: set[str] = set()

    # Records

    @property
    def records(self) -> list[PluginRecord]:
        """Every known plugin's record, sorted by name."""
        return [self._records[name] for name in sorted(self._records)]

    def record(self, name: str) -> PluginRecord | None:
        return self._records.get(name)

    def names(self, status: PluginStatus) -> list[str]:
        return sorted(name for name, record in self._records.items() if record.status is status)

    def hook_call(self, name: str, hook_name: str) -> HookCall | None:
        """Return plugin `name`'s implementation of `hook_name`, or None."""
        return self._calls.get(name, {}).get(hook_name)

    # Discovery

    def discover(self) -> list[PluginRecord]:
        """Find every installed plugin without importing it, and record conflicts.

        The same distribution seen twice (an editable install beside a regular one,
        or a symlinked site-packages) counts once. Two different distributions that
        claim one name are a conflict: both are named and neither is loaded.
        """
        candidates: dict[str, _Candidate] = {}
        for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            candidate = candidates.setdefault(entry_point.name, _Candidate(entry_point.name))
            seen = {_normalize(_distribution_of(ep)[0]) for ep in candidate.entry_points}
            if _normalize(_distribution_of(entry_point)[0]) not in seen:
                candidate.entry_points.append(entry_point)

        for name in sorted(candidates):
            if name in self._registered:
                distributions = ", ".join(
                    str(_distribution_of(ep)[0]) for ep in candidates[name].entry_points)
                logger.warning("plugin %s: the entry point in %s is ignored because a plugin "
                               "registered from Python has this name; rename one of them",
                               name, distributions)
                continue
            if name in self._records:
                continue
            self._candidates[name] = candidates[name]
            self._record_candidate(candidates[name])
        return self.records

    def _record_candidate(self, candidate: _Candidate) -> None:
        entry_point = candidate.entry_points[0]
        distribution, version = _distribution_of(entry_point)
        record = PluginRecord(
            name=candidate.name,
            distribution=distribution,
            version=version,
            module=entry_point.value,
        )
        self._records[candidate.name] = record

        claimants = ", ".join(
            f"{_distribution_of(ep)[0]} {_distribution_of(ep)[1]} ({ep.value})"
            for ep in candidate.entry_points
        )

        # A blocked name is checked first: blocking is how an operator sets aside a
        # plugin, including one in conflict, without uninstalling anything.
        if candidate.name in self.blocked:
            record.status = PluginStatus.BLOCKED
            record.error = f"blocked by configuration or {BLOCKED_ENV}; not imported"
            if len(candidate.entry_points) > 1:
                record.error += f" (claimed by {claimants})"
            logger.info("plugin %s blocked: not imported", candidate.name)
        elif not NAME_PATTERN.match(candidate.name):
            self._fail(
                record,
                f"invalid plugin name {candidate.name!r} in the {ENTRY_POINT_GROUP} entry point "
                f"of {distribution}: a name is 1 to 64 characters of lowercase letters, "
                "digits, '_' and '-', starting with a letter; rename the entry point",
            )
        elif len(candidate.entry_points) > 1:
            record.distribution = None
            record.version = None
            record.module = None
            self._fail(
                record,
                f"plugin name {candidate.name!r} is claimed by {len(candidate.entry_points)} "
                f"distributions: {claimants}; uninstall all but one, or block the name",
                status=PluginStatus.CONFLICT,
            )

    # Loading

    def load_all(self) -> list[PluginRecord]:
        """Discover and load every installed plugin (for `hookgate plugins`)."""
        self.discover()
        for name in list(self._candidates):
            self.load(name)
        return self.records

    def load(self, name: str) -> PluginRecord:
        """Import, instantiate, register and validate one discovered plugin.

        Returns its record; a failure is recorded there (or raised in strict mode).
        A name that no installed distribution declares is recorded as failed.
        """
        if name not in self._records:
            self.discover()
        record = self._records.get(name)
        if record is None:
            record = PluginRecord(name=name)
            self._records[name] = record
            self._fail(
                record,
                f"no installed distribution declares a {ENTRY_POINT_GROUP} entry point named "
                f"{name!r}; install the package that provides it (hookgate's own loggers: "
                f"`pip install ./plugins/{name}` from a checkout of the repository) and "
                "check with `hookgate plugins`",
            )
            return record
        if record.status is not PluginStatus.INSTALLED:
            return record

        entry_point = self._candidates[name].entry_points[0]
        started = time.perf_counter()
        try:
            loaded = entry_point.load()
        except ModuleNotFoundError as error:
            self._fail(record, self._describe_missing_module(record, entry_point, error))
            return record
        except ImportError as error:
            self._fail(record, f"import of {entry_point.value} failed: {error}; "
                       f"reinstall {record.distribution} or report it to its authors")
            return record
        except Exception as error:  # any error in third-party import code
            self._fail(record, f"loading {entry_point.value} raised "
                       f"{type(error).__name__}: {error}; report it to the authors of "
                       f"{record.distribution}")
            return record
        finally:
            record.import_ms = (time.perf_counter() - started) * 1000

        try:
            plugin = loaded() if inspect.isclass(loaded) else loaded
        except Exception as error:  # any error in third-party code
            self._fail(record, f"creating {entry_point.value}() raised "
                       f"{type(error).__name__}: {error}; a plugin class must be creatable "
                       f"with no arguments; report it to the authors of {record.distribution}")
            return record

        self._attach(record, plugin)
        return record

    def register(self, plugin: object, name: str) -> PluginRecord:
        """Register a plugin object from Python code (an in-house logger) under `name`.

        Raises PluginLoadError if the name is invalid or taken, or the plugin's hooks
        do not validate: here the caller is the code that can fix it.
        """
        if not NAME_PATTERN.match(name):
            raise PluginLoadError(
                f"invalid plugin name {name!r}: a name is 1 to 64 characters of lowercase "
                "letters, digits, '_' and '-', starting with a letter"
            )
        if name in self._records:
            raise PluginLoadError(
                f"plugin name {name!r} is already taken by {self._describe_source(name)}; "
                "register under another name"
            )
        if inspect.isclass(plugin):
            raise PluginLoadError(
                f"plugin {name!r}: register an instance of {plugin.__qualname__}, not the "
                f"class itself (`register({plugin.__qualname__}(), {name!r})`)"
            )
        record = PluginRecord(name=name, module=getattr(plugin, "__module__", None))
        self._records[name] = record
        self._registered.add(name)
        if name in self.blocked:
            record.status = PluginStatus.BLOCKED
            record.error = f"blocked by configuration or {BLOCKED_ENV}; not registered"
            logger.info("plugin %s blocked: not registered", name)
            return record

        self._attach(record, plugin, strict=True)
        return record

    def _attach(self, record: PluginRecord, plugin: object, *, strict: bool = False) -> None:
        # hookgate's own checks run first: pluggy's would catch only some of the same
        # mistakes (it ignores keyword-only parameters), with a less specific message.
        problem = self._validate(record.name, plugin)
        if problem is not None:
            self._fail(record, problem, strict=strict)
            return

        try:
            self._register(record.name, plugin)
        except pluggy.PluginValidationError as error:
            # pluggy may have attached some of the plugin's hooks before it found the
            # bad one; remove them all so that no half-registered plugin remains.
            if self.manager.get_plugin(record.name) is not None:
                self.manager.unregister(name=record.name)
            self._calls.pop(record.name, None)
            self._fail(record, f"{error}; fix the hook implementation", strict=strict)
            return

        record.hooks = tuple(sorted(self._calls[record.name]))
        record.status = PluginStatus.LOADED
        logger.debug("plugin %s loaded (%s)", record.name, ", ".join(record.hooks))

    def _register(self, name: str, plugin: object) -> None:
        try:
            self.manager.register(plugin, name=name)
        except ValueError as error:
            # pluggy refuses an object that is already registered under another name.
            # Case in point: two names backed by one instance. Wrap it in a proxy so
            # each name keeps its own registration.
            if "already registered" not in str(error):
                raise
            self.manager.register(_Alias(plugin, self.manager), name=name)

    def _validate(self, name: str, plugin: object) -> str | None:
        calls: dict[str, HookCall] = {}
        for attribute in dir(plugin):
            options = self.manager.parse_hookimpl_opts(plugin, attribute)
            if options is None:
                continue
            function = getattr(plugin, attribute)
            hook_name = options.get("specname") or attribute
            source = f"{name}: {getattr(function, '__qualname__', attribute)}{_signature(function)}"

            if options.get("hookwrapper") or options.get("wrapper"):
                return (f"{source} is marked as a hook wrapper, but hookgate calls each "
                        "plugin on its own, so there is nothing to wrap; remove "
                        "wrapper=True or hookwrapper=True")
            if hook_name not in HOOK_PARAMETERS:
                known = ", ".join(sorted(HOOK_PARAMETERS))
                return f"{source} implements unknown hook {hook_name!r}; hookgate hooks are {known}"
            parameters = inspect.signature(function).parameters
            unknown = [p for p in parameters if p not in HOOK_PARAMETERS[hook_name]]
            if unknown:
                allowed = ", ".join(HOOK_PARAMETERS[hook_name]) or "none"
                return (f"{source} asks for {', '.join(map(repr, unknown))}, which hook "
                        f"{hook_name!r} does not pass (it passes: {allowed}); rename or "
                        "remove the parameter")
            is_async = inspect.iscoroutinefunction(function)
            if is_async and hook_name in SYNC_ONLY_HOOKS:
                return f"{source} is async, but hook {hook_name!r} must be a plain function"
            calls[hook_name] = HookCall(name, hook_name, function, tuple(parameters), is_async)

        if not calls:
            return (f"{name}: {type(plugin).__name__} implements no hookgate hook; mark its "
                    "methods with @hookgate.hookimpl")
        self._calls[name] = calls
        return None

    # Lifecycle hooks

    async def setup(self, name: str, settings: Mapping[str, Any] | None = None, *,
                    timeout: float = 30.0) -> PluginRecord:
        """Load plugin `name` if needed and call its `logger_setup` with `settings`.

        On success the plugin becomes active. `NotConfigured` makes it "not
        configured" and any other exception "failed"; neither is raised (except a
        failure in strict mode).
        """
        record = self.load(name) if name not in self._calls else self._records[name]
        if record.status is not PluginStatus.LOADED:
            return record

        call = self.hook_call(name, "logger_setup")
        if call is not None:
            arguments = {"name": name, "settings": MappingProxyType(dict(settings or {}))}
            try:
                result = call.function(**call.bind(arguments))
                if inspect.isawaitable(result):
                    # asyncio.wait, not wait_for: a TimeoutError raised by the plugin
                    # itself must be reported as its error, not as a setup timeout.
                    task = asyncio.ensure_future(result)
                    done, _ = await asyncio.wait({task}, timeout=timeout)
                    if not done:
                        task.cancel()
                        self.fail(name, f"logger_setup did not finish within {timeout:g} s; "
                                  f"check that the backend in callback_settings.{name} "
                                  "is reachable")
                        return record
                    task.result()
            except NotConfigured as error:
                self.fail(name, f"not configured: {error}", status=PluginStatus.NOT_CONFIGURED)
                return record
            except Exception as error:  # a plugin's error must not escape
                self.fail(name, f"logger_setup raised {type(error).__name__}: {error}; "
                          f"check callback_settings.{name} in the config")
                return record

        record.status = PluginStatus.ACTIVE
        logger.info("plugin %s active (%s)", name, ", ".join(record.hooks))
        return record

    def activate(self, name: str) -> PluginRecord:
        """Mark loaded plugin `name` active without calling its `logger_setup` here.

        For a host that sets the plugin up in another process (the proxy's logger
        process) and keeps this registry for names, records and routes.
        """
        record = self._records[name]
        if record.status is not PluginStatus.LOADED:
            raise ValueError(f"plugin {name!r} is {record.status.value}, not loaded")
        record.status = PluginStatus.ACTIVE
        return record

    def health(self, name: str) -> Mapping[str, Any] | None:
        """Return what plugin `name`'s `logger_health` reports, or an error mapping."""
        call = self.hook_call(name, "logger_health")
        if call is None:
            return None
        try:
            result = call.function()
            return dict(result) if result is not None else None
        except Exception as error:  # shown in the listing instead
            return {"error": f"logger_health raised {type(error).__name__}: {error}"}

    def add_routes(self, name: str, app: Any) -> None:
        """Call plugin `name`'s `logger_routes` with the proxy's application."""
        call = self.hook_call(name, "logger_routes")
        if call is None:
            return
        try:
            call.function(**call.bind({"app": app}))
        except Exception as error:  # a plugin's error must not escape
            self.fail(name, f"logger_routes raised {type(error).__name__}: {error}")

    # Failures

    def _fail(self, record: PluginRecord, message: str, *,
              status: PluginStatus = PluginStatus.FAILED, strict: bool = False) -> None:
        record.status = status
        record.error = message
        logger.error("plugin %s%s %s: %s", record.name, _origin(record), status.value, message)
        if strict or self.strict:
            raise PluginLoadError(f"plugin {record.name!r} {status.value}: {message}")

    def fail(self, name: str, message: str, *, status: PluginStatus = PluginStatus.FAILED) -> None:
        """Mark a loaded plugin as failed (for example after setup raised) and unregister it."""
        record = self._records[name]
        plugin = self.manager.get_plugin(name)
        if plugin is not None:
            self.manager.unregister(plugin, name=name)
        self._calls.pop(name, None)
        record.status = status
        record.error = message
        level = logging.WARNING if status is PluginStatus.NOT_CONFIGURED else logging.ERROR
        logger.log(level, "plugin %s %s: %s", name, status.value, message)
        if self.strict and status is PluginStatus.FAILED:
            raise PluginLoadError(f"plugin {name!r} failed: {message}")

    def _describe_missing_module(self, record: PluginRecord,
                                 entry_point: importlib.metadata.EntryPoint,
                                 error: ModuleNotFoundError) -> str:
        own_module = (record.module or "").split(":")[0].split(".")[0]
        missing = error.name or str(error)
        top_level = missing.split(".")[0]
        if top_level == own_module:
            return (f"module {missing!r} not found: {record.distribution} is installed "
                    f"incompletely; reinstall it (`pip install --force-reinstall "
                    f"{record.distribution}`)")

        requirement = _declared_requirement(entry_point, top_level)
        if requirement is not None:
            return (f"missing dependency: module {missing!r} is not installed, but "
                    f"{record.distribution} requires {requirement!r}; install it "
                    f"(`pip install '{requirement}'`)")
        return (f"missing dependency: module {missing!r} is not installed and "
                f"{record.distribution} does not declare a dependency that provides it; "
                f"install the distribution that provides {top_level!r} (often "
                f"`pip install {top_level}`) and tell the authors of {record.distribution}")

    def _describe_source(self, name: str) -> str:
        record = self._records[name]
        if record.distribution:
            return f"{record.distribution} {record.version}"
        return f"a Python registration ({record.module})"


class _Alias:
    """Stands in for a plugin object already registered under another name.

    pluggy keys registrations by object identity, so one object cannot carry two
    names; this thin proxy gives the second name its own identity. It copies the
    target's bound hook methods into its own `__dict__` because pluggy 1.7 finds
    hooks with `inspect.getattr_static`, which never calls `__getattr__`.
    """

    def __init__(self, target: object, manager: pluggy.PluginManager) -> None:
        self._target = target
        for attribute in dir(target):
            if manager.parse_hookimpl_opts(target, attribute) is not None:
                setattr(self, attribute, getattr(target, attribute))

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self._target, attribute)


def _origin(record: PluginRecord) -> str:
    """Describe where a plugin comes from, for log lines: " (dist 1.0, module:attr)"."""
    parts = []
    if record.distribution:
        parts.append(f"{record.distribution} {record.version}")
    if record.module:
        parts.append(record.module)
    return f" ({', '.join(parts)})" if parts else ""


def _signature(function: Callable[..., Any]) -> str:
    try:
        return str(inspect.signature(function))
    except (TypeError, ValueError):
        return "(...)"
