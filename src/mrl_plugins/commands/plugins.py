"""``mrl-run plugins``: every plugin, what it registers, and (``-v``) each component's parameters."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..components import Command


class Plugins(Command):
    """List plugins and the components they register."""

    name = "plugins"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("recipe", type=Path, nargs="?", help="Also load this recipe's local plugin modules.")
        parser.add_argument("-v", "--verbose", action="store_true", help="Show every component's parameters.")

    def run(self, args: argparse.Namespace) -> int:
        return list_plugins(args.recipe, verbose=args.verbose)


def list_plugins(recipe: Path | None, *, verbose: bool) -> int:
    """Print every plugin (with a recipe: its own modules too) and what each registers."""
    from ..components import KINDS, param_infos
    from ..plugins import load_registry

    modules: tuple[str, ...] = ()
    base_dir = Path(".")
    if recipe is not None:
        from ..recipe.schema import read_toml

        raw = read_toml(recipe)
        modules = tuple(m for m in raw.get("plugins", []) if isinstance(m, str))
        base_dir = recipe.parent
    registry = load_registry(modules=modules, base_dir=base_dir)
    for info in registry.plugins.values():
        version = f" {info.version}" if info.version else ""
        print(f"{info.name}{version}  [{info.source}]")
        if info.error:
            print(f"    BROKEN: {info.error}")
        if info.disabled:
            print("    DISABLED by MRL_DISABLE_PLUGINS: not loaded")
        for kind, names in info.components.items():
            for name in names:
                if name in info.incomplete:
                    missing = ", ".join(f"{m}()" for m in info.incomplete[name])
                    print(f"    {KINDS[kind].noun} {name}: INCOMPLETE, does not implement {missing}")
                    continue
                cls = registry.available(kind, name)
                summary = f": {cls.summary()}" if cls is not None and cls.summary() else ""
                print(f"    {KINDS[kind].noun} {name}{summary}")
                if verbose and cls is not None:
                    for p in param_infos(cls):
                        described = f"  {p.description}" if p.description else ""
                        print(f"        {p.name}: {p.type} = {p.default}{described}")
    return 0
