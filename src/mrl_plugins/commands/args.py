"""What the subcommands share on the command line: argument types (a whole number in range, a
port), the recipe arguments, ``KEY=VALUE`` parameters, and resolving a model argument (a run's
folder, a model folder or a Hub id: :func:`mrl_plugins.evidence.rundir.resolve_model_arg`, which
the searcher uses too).
"""

from __future__ import annotations

import argparse
import tomllib
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..evidence.rundir import resolve_model_arg  # noqa: F401 (the commands' one model-argument resolver)
from ..plugins import Registry


def positive(text: str) -> int:
    """An argparse type: a whole number ≥ 1 (a mistake is a usage error, exit 2)."""
    return _bounded(text, 1)


def non_negative(text: str) -> int:
    return _bounded(text, 0)


def _bounded(text: str, low: int, high: int | None = None) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if value < low or (high is not None and value > high):
        most = f", at most {high}" if high else ""
        raise argparse.ArgumentTypeError(f"{value} is out of range: at least {low}{most}")
    return value


def port(text: str) -> int:
    return _bounded(text, 1, 65535)


def backend_for(registry: Registry, name: str, quantize: str | None,
                assignments: list[str]) -> tuple[str, dict[str, Any]]:
    params: dict[str, Any] = {}
    if quantize:
        offered = registry.quantizations()
        if (name, quantize) not in offered:
            raise UserError(f"--quantize {quantize} does not combine with --index {name}; "
                            f"these do: {', '.join(f'--index {i} --quantize {q}' for i, q in offered)}.")
        name, params = offered[(name, quantize)]
        params = dict(params)
    for item in assignments:
        key, sep, text = item.partition("=")
        if not sep:
            raise UserError(f"--index-param {item}: expected KEY=VALUE, e.g. --index-param m=48.")
        try:
            params[key.strip()] = tomllib.loads(f"v = {text.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            params[key.strip()] = text.strip()
    return name, params


def make_backend(registry: Registry, name: str, params: dict[str, Any]) -> Any:
    from ..plugins import ComponentParamsError

    try:
        return registry.build("index", name, params)
    except ComponentParamsError as exc:
        raise UserError(f"--index {name}: {exc.detail}") from None


def recipe_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", type=Path, help="A TOML recipe, e.g. recipes/quickstart.toml.")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="Override a recipe value, e.g. --set train.epochs=2 (repeatable; values in TOML syntax).",
    )
