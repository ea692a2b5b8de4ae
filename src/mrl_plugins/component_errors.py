"""What a plugin's component got wrong, in the project's words: parameters its schema refuses
(:class:`ComponentParamsError`, :func:`params_problems`), a ``check()`` that raises
(:func:`guarded_check`), and any other method that raises while a recipe uses it
(:func:`plugin_call`, :class:`PluginFailed`, naming the plugin to blame). Kept apart from
:mod:`mrl_plugins.plugins`, which finds and registers components; this module only words what
went wrong with one."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .components import KINDS, Component
from .errors import UserError

if TYPE_CHECKING:
    from .recipe.load import ComponentSpec


class ComponentParamsError(UserError):
    """Parameters a component's schema refuses, found when it is built."""

    def __init__(self, message: str, *, key: str = "", detail: str = "",
                 problems: Sequence[tuple[str, str]] = ()):
        super().__init__(message)
        self.key, self.detail = key, detail
        """``detail``: what is wrong, without naming the component (for messages that name it their way)."""
        self.problems = list(problems)
        """Every refused key: ``(dotted key, what is wrong with it and what it takes)``."""


def _noun_of(cls: type[Component]) -> str:
    return next((k.noun for k in KINDS.values() if issubclass(cls, k.base)), "component")


_SECRET_WORDS = ("dsn", "password", "passwd", "token", "secret", "key", "uri", "url", "credential")


def _shows_input(err: Any, key: str) -> bool:
    """Whether a refused value may be repeated in the message: a plain short value of a key that
    cannot hold a secret, refused by the schema's types (a component's own validator words its
    message itself, and may be refusing a secret: a DSN with a password)."""
    if err["type"] in ("value_error", "assertion_error") or any(w in key.lower() for w in _SECRET_WORDS):
        return False
    return isinstance(err.get("input"), (str, int, float, bool, type(None)))


def params_problems(exc: Any, cls: type[Component]) -> list[tuple[str, str]]:
    """A pydantic ``ValidationError`` of ``cls.Params`` in the project's words: per key, what was
    wrong, the value given, and what the key takes (type, default, allowed values); an unknown
    key gets a suggestion and the keys there are. Never pydantic's own text with its URL."""
    from .components import param_infos

    infos = {p.name: p for p in param_infos(cls)}
    out = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        key = ".".join(loc)
        head = loc[0] if loc else ""
        if err["type"] == "extra_forbidden" and len(loc) == 1:
            close = difflib.get_close_matches(head, list(infos), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else "."
            noun = _noun_of(cls)
            out.append((key, f"unknown key{hint} {noun[:1].upper() + noun[1:]} '{cls.name}' takes: "
                             f"{', '.join(infos) or 'no parameters'}."))
            continue
        if err["type"] == "missing":
            what = "required key is missing"
        else:
            msg = err["msg"].removeprefix("Value error, ")
            what = msg[:1].lower() + msg[1:]
            if _shows_input(err, key):
                what += f" (got {err.get('input')!r:.80})"
        info = infos.get(head)
        takes = f"; {head} is {info.type}, default {info.default}" if info else ""
        takes += f" ({info.description.rstrip('.')})" if info and info.description else ""
        out.append((key, what + takes + "."))
    return out


def guarded_check(component: Component, ctx: Any, name: str | None = None) -> list[str]:
    """A component's own ``check()``; if the plugin's code raises, that is one problem naming the
    plugin (from the registry's :attr:`~mrl_plugins.components.Component.provided_by`), never a
    traceback from validate."""
    name = name or component.name
    plugin = (component.provided_by or {}).get("plugin", "?")
    try:
        found = component.check(ctx)
        if not isinstance(found, (list, tuple)) or not all(isinstance(p, str) for p in found):
            return [f"check() of {name} (plugin '{plugin}') returned {type(found).__name__}, not a list of "
                    "messages; a bug in that plugin."]
        return list(found)
    except UserError as exc:
        return [str(exc)]
    except Exception as exc:  # the plugin's own code: name it, keep going with the other checks
        return [f"check() of {name} (plugin '{plugin}') failed: {type(exc).__name__}: {exc}. A bug in plugin "
                f"'{plugin}' (run with MRL_DEBUG=1 for the traceback), or a setting it could not handle."]


def plugin_call(spec: ComponentSpec[Any], method: str, *args: Any) -> Any:
    """Call a component's method; an exception from the plugin's own code names the plugin."""
    try:
        return getattr(spec.component, method)(*args)
    except (UserError, KeyboardInterrupt):
        raise
    except Exception as exc:
        raise PluginFailed(spec, method, exc) from exc


class PluginFailed(UserError):
    """A component's own code raised: the message names the component, its plugin and the error."""

    exit_code = 1

    def __init__(self, spec: ComponentSpec[Any], method: str, exc: Exception):
        culprit = other_plugin_raising(exc, spec.cls.__module__)
        if culprit is None:
            blame, inside = spec.plugin, ""
        else:
            blame, where = culprit
            inside = f" inside plugin '{blame}' ({where}), which it called"
        super().__init__(
            f"{spec.where}: {KINDS[spec.kind].noun} '{spec.name}' (plugin '{spec.plugin}') failed in {method}()"
            f"{inside}: {type(exc).__name__}: {exc}. If this names your data or settings, fix them; otherwise it is a "
            f"bug in plugin '{blame}' (run with MRL_DEBUG=1 for the traceback)."
        )


def other_plugin_raising(exc: BaseException, own_module: str) -> tuple[str, str] | None:
    """The installed plugin distribution (entry point in ``mrl_plugins``) whose code raised
    ``exc``, when it is not the calling component's own: a funnel comparison (built in) that
    fails inside a third-party index backend names the backend's distribution, not itself.
    ``(distribution, "module.function")`` of the innermost such frame, or ``None``."""
    import importlib.metadata
    import traceback

    from .hookspecs import ENTRY_POINT_GROUP

    own = own_module.split(".")[0]
    packages = {}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        top = ep.module.split(".")[0]
        if top not in (own, "mrl_plugins"):
            packages[top] = ep.dist.name if ep.dist is not None else ep.name
    found = None
    for frame, _ in traceback.walk_tb(exc.__traceback__):
        module = str(frame.f_globals.get("__name__", ""))
        if module.split(".")[0] in packages:
            found = (packages[module.split(".")[0]], f"{module}.{frame.f_code.co_name}")
    return found
