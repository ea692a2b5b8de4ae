"""``mrl-run``: run a recipe, validate it, list plugins, re-report or publish a finished run.

User mistakes (``UserError``) print one paragraph and exit 2, without a traceback; anything
else is a bug and keeps its traceback. ``validate`` and ``plugins`` never import torch.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import UserError

if TYPE_CHECKING:
    from .recipe import Recipe

COMMANDS = ("run", "validate", "plugins", "publish", "report", "index", "search", "demo", "export")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mrl-run",
        description="Fine-tune sentence-transformers models with Matryoshka Representation Learning.",
        epilog="Examples: mrl-run recipes/quickstart.toml | mrl-run validate recipes/quickstart.toml "
        "--set train.epochs=2 | mrl-run plugins -v",
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
    run.add_argument("--resume", action="store_true",
                     help="Continue the newest interrupted run of this recipe; or, given an interrupted run's output "
                     "folder instead of a recipe (mrl-run --resume DIR), that run, with the recipe and --set "
                     "options it was started with.")
    run.add_argument("-q", "--quiet", action="store_true", help="Only warnings and the final table.")
    validate = sub.add_parser("validate", parents=[overrides], help="Check a recipe without loading a model.")
    validate.add_argument("--data", action="store_true",
                          help="Also load the data and run the checks that need it (as a run does before training).")
    plugins = sub.add_parser("plugins", help="List plugins and the components they register.")
    plugins.add_argument("recipe", type=Path, nargs="?", help="Also load this recipe's local plugin modules.")
    plugins.add_argument("-v", "--verbose", action="store_true", help="Show every component's parameters.")
    pub = sub.add_parser("publish", help="Push a finished run's model to the Hub (retries a failed push).")
    pub.add_argument("output_dir", type=Path, help="A run's output directory (holds results.json and model/).")
    pub.add_argument("--repo-id", help="Hub repo 'user/name' (default: the recipe's [publish] repo_id).")
    pub.add_argument("--truncate-dim", help='Default dimension of the published model, or "recommended".')
    pub.add_argument("--revision", help="Branch to push to (default: the recipe's, else main).")
    pub.add_argument("--private", action="store_true", default=None, help="Create the repo as private.")
    pub.add_argument("--model", default="model",
                     help="Which of the run's models: model (MRL, the default) or one a comparison saved, e.g. "
                     "comparisons/mrl-adaptor/model (its card then carries that column's numbers).")
    report = sub.add_parser("report", help="Rewrite a finished run's report.md and metrics.png from results.json.")
    report.add_argument("output_dir", type=Path, help="A run's output directory (holds results.json).")
    from .search.commands import add_parsers, port, positive

    add_parsers(sub)
    demo = sub.add_parser("demo", help="A local page to search a run's corpus with a dimension slider (Gradio).")
    demo.add_argument("run_dir", type=Path, help="A finished run's output directory.")
    demo.add_argument("--index", type=Path, help="Search this index (built by 'mrl-run index' from the run) instead.")
    demo.add_argument("--host", default="127.0.0.1", help="Interface to serve on (default 127.0.0.1: this machine only).")
    demo.add_argument("--port", type=port, default=7860, help="Port to serve on (1-65535, default 7860).")
    export = sub.add_parser("export", help="Export a model to one ONNX graph: token ids in, the truncated, "
                            "re-normalised embedding out (pooling, Dense layers and normalisation inside).")
    export.add_argument("model", help="A run's output directory or a model folder.")
    export.add_argument("-o", "--output", type=Path, required=True, help="The export folder to create.")
    export.add_argument("--format", choices=["onnx"], default="onnx", help="Graph format (onnx).")
    export.add_argument("--dim", type=positive, help="Truncate to this width inside the graph (default: full width).")
    export.add_argument("--quantize", choices=["int8"], help="onnxruntime's dynamic int8 quantisation of the weights.")
    export.add_argument("--overwrite", action="store_true", help="Replace an earlier export (never anything else).")
    return parser


def cmd_publish(args: argparse.Namespace) -> int:
    import tomllib

    from .publish import publish_run, retry_command
    from .results import RunResults

    out = args.output_dir
    results = RunResults.load(out / "results.json")
    try:
        settings = tomllib.loads((out / "recipe.toml").read_text()).get("publish", {})
    except (OSError, ValueError) as exc:
        raise UserError(f"{out}: not a finished run ({exc}); pass the output_dir of a completed 'mrl-run'.") from None
    if not (out / args.model / "modules.json").is_file():
        raise UserError(f"{out / args.model}: no saved model there; pass the output_dir of a completed 'mrl-run' "
                        "(and with --model, a folder it saved).")
    repo_id = args.repo_id or settings.get("repo_id")
    if not repo_id:
        raise UserError("no repo id: pass --repo-id user/name or set [publish] repo_id in the recipe.")
    truncate_dim = None
    if args.truncate_dim is not None:
        truncate_dim = args.truncate_dim if args.truncate_dim == "recommended" else _positive_int(args.truncate_dim)
    private = args.private if args.private is not None else settings.get("private", False)
    revision = args.revision or settings.get("revision")
    retry = retry_command(out, repo_id=args.repo_id, truncate_dim=args.truncate_dim, revision=args.revision,
                          private=bool(args.private), model=args.model)
    url = publish_run(out, results, repo_id=repo_id, private=private, revision=revision, truncate_dim=truncate_dim,
                      retry=retry, model=args.model)
    print(f"pushed {out / args.model} to {repo_id}: {url}")
    return 0


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise UserError(f"--truncate-dim {text}: expected a positive whole number or \"recommended\".")
    return int(text)


def setup_logging(quiet: bool = False) -> None:
    if quiet:  # before torch, transformers, datasets and huggingface_hub are imported: no progress bars at all
        os.environ.setdefault("TQDM_DISABLE", "1")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="%(message)s")
    for noisy in ("httpx", "httpcore", "urllib3", "filelock", "huggingface_hub", "sentence_transformers", "datasets", "faiss"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def cmd_plugins(args: argparse.Namespace) -> int:
    from .components import KINDS, param_infos
    from .plugins import load_registry

    modules: tuple[str, ...] = ()
    base_dir = Path(".")
    if args.recipe is not None:
        from .recipe import read_toml

        raw = read_toml(args.recipe)
        modules = tuple(m for m in raw.get("plugins", []) if isinstance(m, str))
        base_dir = args.recipe.parent
    registry = load_registry(modules=modules, base_dir=base_dir)
    for info in registry.plugins.values():
        version = f" {info.version}" if info.version else ""
        print(f"{info.name}{version}  [{info.source}]")
        if info.error:
            print(f"    BROKEN: {info.error}")
        for kind, names in info.components.items():
            for name in names:
                if name in info.incomplete:
                    missing = ", ".join(f"{m}()" for m in info.incomplete[name])
                    print(f"    {KINDS[kind].noun} {name}: INCOMPLETE, does not implement {missing}")
                    continue
                cls = registry.available(kind, name)
                summary = f": {cls.summary()}" if cls is not None and cls.summary() else ""
                print(f"    {KINDS[kind].noun} {name}{summary}")
                if args.verbose and cls is not None:
                    for p in param_infos(cls):
                        print(f"        {p.name}: {p.type} = {p.default}" + (f"  {p.description}" if p.description else ""))
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from .recipe import load_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    from .checks import memory_warning

    dims = recipe.dims.component.dims(recipe.full_dim) if recipe.full_dim else None
    sizes = check_data(recipe) if args.data else data_size_hints(recipe)
    print(f"{args.recipe}: OK" + (" (data loaded and checked)" if args.data else ""))
    warning = memory_warning(recipe, full_dim=recipe.full_dim, **sizes)
    if warning:
        print(f"  warning   {warning}")
    print(f"  model     {recipe.model.requested}  ({recipe.model.origin}, {recipe.full_dim or '?'} dims)")
    print(f"  data      {recipe.data.name}  ({recipe.row_format} rows, plugin {recipe.data.plugin})")
    print(f"  loss      {recipe.objective.name}({recipe.loss.name})")
    if recipe.warm_start:
        print(f"  warm      {recipe.warm_start.name} (and the same training without it, for comparison)")
    print(f"  dims      {dims if dims else recipe.dims.name + ' (model width known when it loads)'}")
    print(f"  models    {recipe.models.describe()}")
    if recipe.compare:
        print(f"  compare   {', '.join(c.label for c in recipe.compare)}")
    print(f"  output    {recipe.output_dir}")
    return 0


def data_size_hints(recipe: Recipe) -> dict[str, int | None]:
    """The evaluation set's size as the data source's parameters state it (without loading it)."""
    params = recipe.data.params
    queries, corpus = getattr(params, "eval_queries", None), getattr(params, "corpus_size", None)
    texts = (queries or 0) + (corpus or 0) or None
    return {"eval_texts": texts, "fit_texts": None}


def check_data(recipe: Recipe) -> dict[str, int | None]:
    """Load the recipe's data and run every component's checks that need it; the data's sizes."""
    from .components import ValidationContext
    from .errors import RecipeError
    from .recipe import guarded_check, variant_specs
    from .run.pipeline import read_data_source

    bundle = read_data_source(recipe)
    ctx = ValidationContext(recipe.base_dir, recipe.full_dim, recipe.settings.eval.k, recipe.registry, bundle)
    specs = [s for s in (recipe.data, recipe.loss, recipe.dims, recipe.objective, recipe.warm_start, *recipe.compare) if s]
    specs += variant_specs(recipe.compare, recipe.registry)
    problems = [f"{spec.where} {p}" for spec in specs for p in guarded_check(spec, ctx)]
    if problems:
        raise RecipeError(f"{recipe.path} (checked against its data)", problems)
    return {"eval_texts": len(bundle.eval.queries) + len(bundle.eval.corpus), "fit_texts": len(bundle.training_texts("all"))}


def cmd_run(args: argparse.Namespace) -> int:
    from .recipe import load_recipe

    out = None
    recipe_path, overrides = args.recipe, list(args.overrides)
    from .run.staging import staging_dir

    if args.recipe.is_dir() or args.recipe.name.endswith(".partial") or (args.resume and staging_dir(args.recipe).is_dir()):
        if not args.resume:
            raise UserError(f"{args.recipe}: a folder, not a recipe; to continue an interrupted run there, pass "
                            f"--resume (mrl-run --resume {args.recipe}).")
        from .run.staging import staged_invocation

        recipe_path, out, saved = staged_invocation(args.recipe)
        overrides = saved + overrides
    recipe = load_recipe(recipe_path, overrides)
    setup_logging(quiet=args.quiet)

    from .report import format_table
    from .run import run

    results = run(recipe, overwrite=args.overwrite, resume=args.resume, out=out)
    if results is None:  # a non-zero rank under torchrun: rank 0 reports
        return 0
    print()
    print(format_table(results))
    print(f"Model, results.json, report.md with its plots, the evaluation set and the resolved recipe: {recipe.output_dir}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .report import format_table, write_report
    from .results import RunResults

    results = RunResults.load(args.output_dir / "results.json")
    write_report(args.output_dir, results)
    print(format_table(results))
    print(f"Rewrote {args.output_dir / 'report.md'} and {args.output_dir / 'metrics.png'} from results.json.")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and (argv[0] not in COMMANDS and not argv[0].startswith("-") or argv[0] == "--resume"):
        argv.insert(0, "run")
    args = _parser().parse_args(argv)
    try:
        if args.command == "plugins":
            return cmd_plugins(args)
        if args.command == "validate":
            return cmd_validate(args)
        if args.command == "publish":
            setup_logging()
            return cmd_publish(args)
        if args.command == "report":
            return cmd_report(args)
        if args.command == "demo":
            from .demo import serve

            setup_logging(quiet=True)
            serve(args.run_dir, index=args.index, host=args.host, port=args.port)
            return 0
        if args.command == "export":
            from .export import cmd_export

            setup_logging(quiet=True)
            return cmd_export(args)
        if args.command in ("index", "search"):
            from .search import commands

            setup_logging(quiet=args.command == "search")
            return commands.cmd_index(args) if args.command == "index" else commands.cmd_search(args)
        return cmd_run(args)
    except UserError as exc:
        if os.environ.get("MRL_DEBUG") == "1":
            traceback.print_exc()
        print(f"mrl-run: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("mrl-run: interrupted; no output was written.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
