"""The plugin manager: built-ins, installed entry points and recipe-local modules, one path.

Built-ins are ordinary ``@hookimpl`` modules (as datasette's DEFAULT_PLUGINS and llm's
default_plugins are); entry points are loaded on first use, never at import time. Each
plugin's hooks are called separately so every component is attributed to its plugin, and a
plugin that fails to import, misspells a hook or registers nonsense is recorded as broken
instead of taking the others down with it.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import importlib.util
import logging
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, overload

import pluggy

from . import hookspecs
from .component_errors import ComponentParamsError, params_problems
from .components import (
    KINDS,
    Command,
    Comparison,
    Component,
    DataSource,
    DimSchedule,
    Executor,
    IndexBackend,
    Loss,
    Objective,
    WarmStart,
    missing_methods,
)
from .data.types import RowFormat
from .errors import PluginError
from .hookspecs import ENTRY_POINT_GROUP

logger = logging.getLogger(__name__)

ParamsArg = Mapping[str, Any] | None
"""Parameters for :meth:`Registry.build`: a recipe table's keys, or none for the defaults."""
DISABLE_ENV = "MRL_DISABLE_PLUGINS"
"""Installed plugins not to load, by distribution or entry-point name, separated by commas (as
llm's ``LLM_LOAD_PLUGINS`` and tox's ``TOX_DISABLED_EXTERNAL_PLUGINS``): the escape hatch when
one installed plugin breaks or shadows another. Built-ins and a recipe's own modules are not
affected: a recipe names those explicitly."""


def disabled_plugins() -> set[str]:
    return {name.strip() for name in os.environ.get(DISABLE_ENV, "").split(",") if name.strip()}

DEFAULT_PLUGINS = (
    "mrl_plugins.builtin.losses",
    "mrl_plugins.builtin.schedules",
    "mrl_plugins.builtin.comparisons",
    "mrl_plugins.builtin.search_comparisons",
    "mrl_plugins.builtin.adaptor",
    "mrl_plugins.export.comparison",
    "mrl_plugins.builtin.local",
    "mrl_plugins.builtin.debian",
    "mrl_plugins.builtin.manpages",
    "mrl_plugins.builtin.docstrings",
    "mrl_plugins.builtin.warm_starts",
    "mrl_plugins.builtin.index_backends",
    "mrl_plugins.builtin.objectives",
    "mrl_plugins.builtin.tasks",
    "mrl_plugins.commands",
    "mrl_plugins.embed.local",
)


@dataclass
class PluginInfo:
    """One plugin as ``mrl-run plugins`` shows it."""

    name: str
    source: str  # "builtin", "entry point" or "recipe"
    version: str | None = None
    distribution: str | None = None
    """The installed distribution that holds it (what ``pip install`` takes): ``mrl-plugins`` for
    the built-ins, the entry point's distribution, ``None`` for a recipe's own module."""
    components: dict[str, list[str]] = field(default_factory=dict)
    """Kind key → names of the components it registered (incomplete ones included)."""
    incomplete: dict[str, list[str]] = field(default_factory=dict)
    """Component name → the abstract methods it does not implement."""
    error: str | None = None
    disabled: bool = False
    """Not loaded: named in ``MRL_DISABLE_PLUGINS``."""


class Registry:
    """Every registered component by kind and name, with the plugin that registered it."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager("mrl_plugins")
        self.pm.add_hookspecs(hookspecs)
        self.plugins: dict[str, PluginInfo] = {}
        self._components: dict[str, dict[str, tuple[type[Component], str]]] = {k: {} for k in KINDS}
        self._conflicts: dict[tuple[str, str], list[str]] = {}
        self._incomplete: dict[tuple[str, str], tuple[str, list[str]]] = {}

    # -- registration -------------------------------------------------------------------
    def add_plugin(self, plugin: Any, name: str, source: str, version: str | None = None,
                   distribution: str | None = None) -> PluginInfo:
        """Register one plugin object or module; problems mark it broken instead of raising."""
        info = PluginInfo(name=name, source=source, version=version, distribution=distribution)
        self.plugins[name] = info
        try:
            self.pm.register(plugin, name=name)
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            if self.pm.is_registered(plugin):
                self.pm.unregister(plugin)
            info.error = _hook_error(exc)
            return info
        staged: list[tuple[str, type[Component]]] = []
        try:
            for kind in KINDS.values():
                for impl in getattr(self.pm.hook, kind.hook).get_hookimpls():
                    if impl.plugin is plugin:
                        impl.function(register=lambda cls, _k=kind.key: staged.append((_k, cls)))
            for kind_key, cls in staged:
                _check_component(kind_key, cls)
        except Exception as exc:  # a plugin's own bug must not take the others down
            self.pm.unregister(plugin)
            info.error = f"{type(exc).__name__}: {exc}"
            return info
        for kind_key, cls in staged:
            info.components.setdefault(kind_key, []).append(cls.name)
            missing = missing_methods(cls)
            if missing:  # refused when a recipe names it, with what is missing; others still work
                info.incomplete[cls.name] = missing
                self._incomplete[(kind_key, cls.name)] = (name, missing)
            else:
                self._add(kind_key, cls, name)
        return info

    def add_broken(self, name: str, source: str, version: str | None, error: str) -> None:
        self.plugins[name] = PluginInfo(name=name, source=source, version=version, error=error)

    def _add(self, kind: str, cls: type[Component], plugin: str) -> None:
        table, key = self._components[kind], (kind, cls.name)
        if cls.name in table:  # the first owner moves to the conflict list: the name is now ambiguous
            self._conflicts[key] = [table.pop(cls.name)[1]]
        if key in self._conflicts:
            owners = self._conflicts[key]
            owners.append(plugin)
            logger.warning("%s %r is registered by several plugins: %s", KINDS[kind].noun, cls.name, ", ".join(owners))
            return
        table[cls.name] = (cls, plugin)

    # -- lookup -------------------------------------------------------------------------
    def names(self, kind: str) -> list[str]:
        return sorted(self._components[kind])

    def exact_index(self) -> str:
        """The name of a registered exact index backend (``IndexBackend.exact``): what plain
        truncation is searched with and every speed ratio is measured against."""
        exact = [name for name, (cls, _) in self._components["index"].items() if getattr(cls, "exact", False)]
        if not exact:
            raise PluginError("no registered index backend is exact (IndexBackend.exact); the built-in 'flat' is, "
                              "unless a plugin replaced it or MRL_DISABLE_PLUGINS switched it off.")
        return exact[0]

    def quantizations(self) -> dict[tuple[str, str], tuple[str, dict[str, Any]]]:
        """(backend, precision) → (backend, parameters) for ``--quantize``, from every registered backend."""
        out = {}
        for name, (cls, _) in self._components["index"].items():
            for precision, (target, params) in getattr(cls, "quantized", {}).items():
                out[(name, precision)] = (target, dict(params))
        return out

    def owner(self, kind: str, name: str) -> str:
        return self._components[kind][name][1]

    def provenance(self, kind: str, name: str) -> dict[str, Any]:
        """Which plugin, distribution and version provide a component: what an index's manifest
        records, so that opening it where that plugin is missing says what to install."""
        info = self.plugins[self.owner(kind, name)]
        return {"plugin": info.name, "distribution": info.distribution, "version": info.version}

    def available(self, kind: str, name: str) -> type[Component] | None:
        """The component class if a recipe can use it (registered once, complete), else ``None``."""
        entry = self._components[kind].get(name)
        return entry[0] if entry else None

    @overload
    def get(self, kind: Literal["data"], name: str) -> type[DataSource[Any]]: ...
    @overload
    def get(self, kind: Literal["loss"], name: str) -> type[Loss[Any]]: ...
    @overload
    def get(self, kind: Literal["dims"], name: str) -> type[DimSchedule[Any]]: ...
    @overload
    def get(self, kind: Literal["compare"], name: str) -> type[Comparison[Any]]: ...
    @overload
    def get(self, kind: Literal["warm_start"], name: str) -> type[WarmStart[Any]]: ...
    @overload
    def get(self, kind: Literal["index"], name: str) -> type[IndexBackend[Any]]: ...
    @overload
    def get(self, kind: Literal["objective"], name: str) -> type[Objective[Any]]: ...
    @overload
    def get(self, kind: Literal["command"], name: str) -> type[Command[Any]]: ...
    @overload
    def get(self, kind: Literal["executor"], name: str) -> type[Executor[Any]]: ...
    @overload
    def get(self, kind: str, name: str) -> type[Component[Any]]: ...

    def get(self, kind: str, name: str) -> type[Component[Any]]:
        """The component class, or a PluginError that suggests a name and lists what exists.
        Typed by kind: ``get("index", name)`` is an ``IndexBackend`` class to a type checker."""
        if name in self._components[kind]:
            return self._components[kind][name][0]
        noun = KINDS[kind].noun
        if (kind, name) in self._conflicts:
            owners = " and ".join(f"'{p}'" for p in self._conflicts[(kind, name)])
            raise PluginError(
                f"{noun} '{name}' is registered by both {owners}; uninstall one of them "
                "(see 'mrl-run plugins')."
            )
        if (kind, name) in self._incomplete:
            plugin, missing = self._incomplete[(kind, name)]
            methods = ", ".join(f"{m}()" for m in missing)
            raise PluginError(
                f"{noun} '{name}' (plugin '{plugin}') is incomplete: it does not implement {methods}, which every "
                f"{KINDS[kind].base.__name__} must; the plugin has to add {'it' if len(missing) == 1 else 'them'} "
                "(see docs/plugin-guide.md, 'Component reference')."
            )
        raise PluginError(self.unknown_message(kind, name))

    @overload
    def build(self, kind: Literal["data"], name: str, params: ParamsArg = None) -> DataSource[Any]: ...
    @overload
    def build(self, kind: Literal["loss"], name: str, params: ParamsArg = None) -> Loss[Any]: ...
    @overload
    def build(self, kind: Literal["dims"], name: str, params: ParamsArg = None) -> DimSchedule[Any]: ...
    @overload
    def build(self, kind: Literal["compare"], name: str, params: ParamsArg = None) -> Comparison[Any]: ...
    @overload
    def build(self, kind: Literal["warm_start"], name: str, params: ParamsArg = None) -> WarmStart[Any]: ...
    @overload
    def build(self, kind: Literal["index"], name: str, params: ParamsArg = None) -> IndexBackend[Any]: ...
    @overload
    def build(self, kind: Literal["objective"], name: str, params: ParamsArg = None) -> Objective[Any]: ...
    @overload
    def build(self, kind: Literal["command"], name: str, params: ParamsArg = None) -> Command[Any]: ...
    @overload
    def build(self, kind: Literal["executor"], name: str, params: ParamsArg = None) -> Executor[Any]: ...
    @overload
    def build(self, kind: str, name: str, params: ParamsArg = None) -> Component[Any]: ...

    def build(self, kind: str, name: str, params: ParamsArg = None) -> Component[Any]:
        """A component built from its name and parameters: the one construction path (recipes,
        comparisons asking for an index backend, ``mrl-run index``, the demo, the test kit).
        Parameters that its ``Params`` schema refuses are a :class:`ComponentParamsError`
        naming the component and the first bad key."""
        from pydantic import ValidationError

        cls = self.get(kind, name)
        try:
            component = cls(cls.Params.model_validate(dict(params or {})))
        except ValidationError as exc:
            problems = params_problems(exc, cls)
            key = problems[0][0] if problems else ""
            detail = " ".join(f"parameter '{k}': {what}" for k, what in problems) or str(exc.errors()[0]["msg"])
            raise ComponentParamsError(f"{KINDS[kind].noun} '{name}' refused {dict(params or {})}: {detail}",
                                       key=key, detail=detail, problems=problems) from None
        component.provided_by = self.provenance(kind, name)
        return component

    def unknown_message(self, kind: str, name: str) -> str:
        noun = KINDS[kind].noun
        known = self.names(kind)
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
        msg = f"unknown {noun} '{name}'"
        if close:
            msg += f"; did you mean '{close[0]}'?"
        msg += f" Available: {', '.join(known) or 'none'}."
        broken = [p for p in self.plugins.values() if p.error]
        if broken:
            msg += " Plugins that failed to load and may provide it: " + "; ".join(
                f"{p.name} ({p.error})" for p in broken
            )
        off = [p.name for p in self.plugins.values() if p.disabled]
        if off:
            msg += f" Switched off by {DISABLE_ENV} and may provide it: {', '.join(off)}."
        return msg


def _hook_error(exc: pluggy.PluginValidationError) -> str:
    text = str(exc)
    known = [k.hook for k in KINDS.values()]
    for word in text.replace("'", " ").replace('"', " ").split():
        if word.startswith("register") and word not in known:
            close = difflib.get_close_matches(word, known, n=1)
            if close:
                return f"unknown hook '{word}'; did you mean '{close[0]}'?"
            return f"unknown hook '{word}'; known hooks: {', '.join(known)}"
    return text


def _check_component(kind: str, cls: Any) -> None:
    base = KINDS[kind].base
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise TypeError(f"{KINDS[kind].hook} registered {cls!r}, which is not a subclass of {base.__name__}")
    if not isinstance(getattr(cls, "name", None), str) or not cls.name:
        raise TypeError(f"{cls.__name__} has no 'name' string")
    formats_attr = "produces" if issubclass(cls, DataSource) else "accepts" if issubclass(cls, Loss) else None
    if formats_attr:
        formats = getattr(cls, formats_attr, None)
        known = [f.value for f in RowFormat]
        if not formats or isinstance(formats, str) or any(str(f) not in known for f in formats):
            raise TypeError(f"{cls.__name__}.{formats_attr} must be a tuple of row formats ({', '.join(known)}), "
                            f"got {formats!r}")


def _load_builtins(registry: Registry) -> None:
    from . import __version__

    for module_name in DEFAULT_PLUGINS:
        registry.add_plugin(importlib.import_module(module_name), module_name, "builtin", __version__, "mrl-plugins")


def _load_entry_points(registry: Registry) -> None:
    disabled = disabled_plugins()
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(ep, "dist", None)
        name = dist.name if dist is not None else ep.name
        version = dist.version if dist is not None else None
        if name in registry.plugins:
            name = f"{name}:{ep.name}"
        if disabled & {name, ep.name, dist.name if dist is not None else ep.name}:
            registry.plugins[name] = PluginInfo(name=name, source="entry point", version=version, disabled=True)
            continue
        try:
            plugin = ep.load()
        except Exception as exc:  # reported by `mrl-run plugins`, fatal only when used
            registry.add_broken(name, "entry point", version, f"{type(exc).__name__}: {exc}")
            continue
        registry.add_plugin(plugin, name, "entry point", version, dist.name if dist is not None else None)


def load_module_plugin(registry: Registry, spec: str, base_dir: Path) -> PluginInfo:
    """Register a recipe-local plugin: a ``.py`` path (relative to the recipe) or a module name.

    Never raises: a module that is missing, fails to import or registers nonsense is recorded
    as broken (``info.error``), so the modules beside it still register their components.
    """
    if spec in registry.plugins:  # listed twice: registering it again would only clash with itself
        return registry.plugins[spec]
    try:
        if spec.endswith(".py") or "/" in spec:
            path = (base_dir / spec).resolve()
            if not path.is_file():
                registry.add_broken(spec, "recipe", None, f"file not found (looked for {path})")
                return registry.plugins[spec]
            mod_name = f"mrl_recipe_plugin_{path.stem}_{abs(hash(str(path)))}"
            module_spec = importlib.util.spec_from_file_location(mod_name, path)
            if module_spec is None or module_spec.loader is None:
                raise ImportError(f"{path} cannot be imported as a Python module")
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[mod_name] = module
            module_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(spec)
    except Exception as exc:
        registry.add_broken(spec, "recipe", None, f"failed to import: {type(exc).__name__}: {exc}")
        return registry.plugins[spec]
    return registry.add_plugin(module, spec, "recipe")


def load_registry(*, entry_points: bool = True, modules: tuple[str, ...] = (), base_dir: Path = Path(".")) -> Registry:
    """A fresh registry: built-ins, then installed entry points, then recipe-local modules
    (each on its own; see :func:`load_module_plugin`)."""
    registry = Registry()
    _load_builtins(registry)
    if entry_points:
        _load_entry_points(registry)
    for spec in modules:
        load_module_plugin(registry, spec, base_dir)
    return registry


