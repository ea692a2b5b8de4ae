"""``mrl-run``: run a recipe, validate it, or list plugins.

User mistakes (``UserError``) print one paragraph and exit 2, without a traceback; anything
else is a bug and keeps its traceback. ``validate`` and ``plugins`` never import torch.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .errors import UserError

COMMANDS = ("run", "validate", "plugins")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mrl-run",
        description="Fine-tune sentence-transformers models with Matryoshka Representation Learning.",
        epilog="Examples: mrl-run recipes/quickstart.toml | mrl-run validate recipes/quickstart.toml "
        "--set train.epochs=2 | mrl-run plugins",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    overrides = argparse.ArgumentParser(add_help=False)
    overrides.add_argument("recipe", type=Path, help="A TOML recipe, e.g. recipes/quickstart.toml.")
    overrides.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="Override a recipe value, e.g. --set train.epochs=2 (repeatable; values in TOML syntax).",
    )
    run = sub.add_parser("run", parents=[overrides], help="Run a recipe (the default command).")
    run.add_argument("--overwrite", action="store_true", help="Replace a non-empty output directory.")
    run.add_argument("-q", "--quiet", action="store_true", help="Only warnings and the final table.")
    sub.add_parser("validate", parents=[overrides], help="Check a recipe without loading a model.")
    sub.add_parser("plugins", help="List installed plugins and the components they register.")
    return parser


def cmd_plugins() -> int:
    from .components import KINDS
    from .plugins import load_registry

    registry = load_registry()
    for info in registry.plugins.values():
        version = f" {info.version}" if info.version else ""
        print(f"{info.name}{version}  [{info.source}]")
        if info.error:
            print(f"    BROKEN: {info.error}")
        for kind, names in info.components.items():
            print(f"    {KINDS[kind].noun}: {', '.join(names)}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from .recipe import load_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    dims = recipe.dims.build().dims(recipe.full_dim) if recipe.full_dim else None
    print(f"{args.recipe}: OK")
    print(f"  model     {recipe.model.requested}  ({recipe.model.origin}, {recipe.full_dim or '?'} dims)")
    print(f"  data      {recipe.data.name}  ({recipe.row_format} rows, plugin {recipe.data.plugin})")
    print(f"  loss      MatryoshkaLoss({recipe.loss.name})")
    print(f"  dims      {dims if dims else recipe.dims.name + ' (model width known when it loads)'}")
    if recipe.compare:
        print(f"  compare   {', '.join(c.build().label() for c in recipe.compare)}")
    print(f"  output    {recipe.output_dir}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from .recipe import load_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    for noisy in ("httpx", "urllib3", "filelock", "sentence_transformers", "datasets"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    from .report import format_table
    from .runner import run

    results = run(recipe, overwrite=args.overwrite)
    print()
    print(format_table(results))
    print(f"Model, results.json and the resolved recipe: {recipe.output_dir}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] not in COMMANDS and not argv[0].startswith("-"):
        argv.insert(0, "run")
    args = _parser().parse_args(argv)
    try:
        if args.command == "plugins":
            return cmd_plugins()
        if args.command == "validate":
            return cmd_validate(args)
        return cmd_run(args)
    except UserError as exc:
        print(f"mrl-run: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("mrl-run: interrupted; no output was written.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
