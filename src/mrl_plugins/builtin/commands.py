"""The built-in subcommands of ``mrl-run``, registered through ``register_commands`` exactly as a
plugin registers its own: each is a :class:`~mrl_plugins.components.Command` with its arguments
and its ``run``. ``validate`` and ``plugins`` never import torch.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..components import Command
from ..errors import UserError
from ..hookspecs import hookimpl
from ..logs import setup_logging
from ..search.commands import index_arguments, non_negative, port, positive, search_arguments

if TYPE_CHECKING:
    from ..recipe import Recipe

__all__ = ["non_negative"]


def _recipe_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", type=Path, help="A TOML recipe, e.g. recipes/quickstart.toml.")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="Override a recipe value, e.g. --set train.epochs=2 (repeatable; values in TOML syntax).",
    )


class Run(Command):
    """Run a recipe (the default command)."""

    name = "run"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        _recipe_arguments(parser)
        parser.add_argument("--overwrite", action="store_true", help="Replace a non-empty output directory.")
        parser.add_argument("--resume", action="store_true",
                            help="Continue the newest interrupted run of this recipe; or, given an interrupted run's "
                            "output folder instead of a recipe (mrl-run --resume DIR), that run, with the recipe and "
                            "--set options it was started with.")
        parser.add_argument("-q", "--quiet", action="store_true", help="Only warnings and the final table.")

    def run(self, args: argparse.Namespace) -> int:
        return cmd_run(args)


class Validate(Command):
    """Check a recipe without loading a model."""

    name = "validate"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        _recipe_arguments(parser)
        parser.add_argument("--data", action="store_true",
                            help="Also load the data and run the checks that need it (as a run does before training).")

    def run(self, args: argparse.Namespace) -> int:
        return cmd_validate(args)


class Plugins(Command):
    """List plugins and the components they register."""

    name = "plugins"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("recipe", type=Path, nargs="?", help="Also load this recipe's local plugin modules.")
        parser.add_argument("-v", "--verbose", action="store_true", help="Show every component's parameters.")

    def run(self, args: argparse.Namespace) -> int:
        return cmd_plugins(args)


class Publish(Command):
    """Push a finished run's model to the Hub (retries a failed push)."""

    name = "publish"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("output_dir", type=Path, help="A run's output directory (holds results.json and model/).")
        parser.add_argument("--repo-id", help="Hub repo 'user/name' (default: the recipe's [publish] repo_id).")
        parser.add_argument("--truncate-dim", help='Default dimension of the published model, or "recommended".')
        parser.add_argument("--revision", help="Branch to push to (default: the recipe's, else main).")
        parser.add_argument("--private", action="store_true", default=None, help="Create the repo as private.")
        parser.add_argument("--model", default="model",
                            help="Which of the run's models: model (MRL, the default) or one a comparison saved, e.g. "
                            "comparisons/adaptor-mrl/model (its card then carries that column's numbers).")
        parser.add_argument("--export", action="append", type=Path, default=[], metavar="DIR",
                            help="An 'mrl-run export' folder of this model to push beside it (onnx/ or openvino/, "
                            "named mrl_embedding_<dim>[_int8]); repeat for several.")

    def run(self, args: argparse.Namespace) -> int:
        setup_logging()
        return cmd_publish(args)


class Report(Command):
    """Rewrite a finished run's report.md and metrics.png from results.json."""

    name = "report"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("output_dir", type=Path, help="A run's output directory (holds results.json).")

    def run(self, args: argparse.Namespace) -> int:
        return cmd_report(args)


class Index(Command):
    """Build a funnel index (shortlist at a low dimension, rerank at full) from a corpus."""

    name = "index"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        index_arguments(parser)

    def run(self, args: argparse.Namespace) -> int:
        from ..search import commands

        setup_logging()
        return commands.cmd_index(args)


class Embed(Command):
    """Embed a corpus once into resumable shards (any size; every device of a machine; a cluster via an executor)."""

    name = "embed"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        from ..search.embed import embed_arguments

        embed_arguments(parser)

    def run(self, args: argparse.Namespace) -> int:
        from ..search.embed import cmd_embed

        setup_logging()
        return cmd_embed(args)


class Search(Command):
    """Search an index built by 'mrl-run index'."""

    name = "search"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        search_arguments(parser)

    def run(self, args: argparse.Namespace) -> int:
        from ..search import commands

        setup_logging(quiet=True)
        return commands.cmd_search(args)


class Demo(Command):
    """A local page to search a run's corpus with a dimension slider (Gradio)."""

    name = "demo"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("run_dir", type=Path, help="A finished run's output directory.")
        parser.add_argument("--index", type=Path,
                            help="Search this index (built by 'mrl-run index' from the run) instead.")
        parser.add_argument("--host", default="127.0.0.1",
                            help="Interface to serve on (default 127.0.0.1: this machine only).")
        parser.add_argument("--port", type=port, default=7860, help="Port to serve on (1-65535, default 7860).")

    def run(self, args: argparse.Namespace) -> int:
        from ..demo import serve

        setup_logging(quiet=True)
        serve(args.run_dir, index=args.index, host=args.host, port=args.port)
        return 0


class Export(Command):
    """Export a model to one ONNX or OpenVINO graph: token ids in, the truncated, re-normalised embedding out."""

    name = "export"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("model", help="A run's output directory or a model folder.")
        parser.add_argument("-o", "--output", type=Path, required=True, help="The export folder to create.")
        parser.add_argument("--format", choices=["onnx", "openvino", "sentence-transformers-3"], default="onnx",
                            help="Graph format: onnx (onnxruntime, fastembed) or openvino (OpenVINO IR); or "
                            "sentence-transformers-3: a copy of the model that sentence-transformers 3 and "
                            "transformers 4 read (Infinity).")
        parser.add_argument("--dim", type=positive,
                            help="Truncate to this width inside the graph (default: full width).")
        parser.add_argument("--quantize", choices=["int8"],
                            help="int8: onnxruntime's dynamic quantisation of the weights (onnx), or NNCF's static "
                            "quantisation calibrated on --calibration texts (openvino).")
        parser.add_argument("--calibration", metavar="CORPUS",
                            help="Documents to calibrate an OpenVINO int8 graph on (a file, folder or pattern, as "
                            "'mrl-run index' reads; the first 300 texts), never the evaluation set.")
        parser.add_argument("--overwrite", action="store_true", help="Replace an earlier export (never anything else).")

    def run(self, args: argparse.Namespace) -> int:
        from ..export import cmd_export

        setup_logging(quiet=True)
        return cmd_export(args)


class Sweep(Command):
    """Hyperparameter search on the validation split (Optuna); then one final run of the best recipe."""

    name = "sweep"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        _recipe_arguments(parser)
        parser.add_argument("--trials", type=positive, help="Trials in the study (default: [sweep] trials); a rerun "
                            "continues the study up to this many.")
        parser.add_argument("--storage", help="Optuna storage URL shared by several workers, e.g. "
                            "postgresql://user@host/db (default: sqlite in the sweep's folder).")
        parser.add_argument("--worker", action="store_true",
                            help="Run trials only: leave the best recipe and the final run to one 'mrl-run sweep' "
                            "without --worker.")
        parser.add_argument("-q", "--quiet", action="store_true", help="Only warnings and the sweep's summary.")

    def run(self, args: argparse.Namespace) -> int:
        return cmd_sweep(args)


BUILTIN = (Run, Validate, Plugins, Publish, Report, Embed, Index, Search, Demo, Export, Sweep)


@hookimpl
def register_commands(register):
    for command in BUILTIN:
        register(command)


# -- what the commands do ----------------------------------------------------------------------
def cmd_publish(args: argparse.Namespace) -> int:
    from ..evidence.rundir import RunDir
    from ..publish import publish_run, retry_command

    run = RunDir.open(args.output_dir)
    out, results = run.path, run.results()
    settings = run.recipe_table("publish")
    if not (run.saved(args.model) / "modules.json").is_file():
        raise UserError(f"{run.saved(args.model)}: no saved model there; pass the output_dir of a completed 'mrl-run' "
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
                          private=bool(args.private), model=args.model, exports=args.export)
    url = publish_run(out, results, repo_id=repo_id, private=private, revision=revision, truncate_dim=truncate_dim,
                      retry=retry, model=args.model, exports=args.export)
    print(f"pushed {out / args.model} to {repo_id}: {url}")
    return 0


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise UserError(f"--truncate-dim {text}: expected a positive whole number or \"recommended\".")
    return int(text)


def cmd_plugins(args: argparse.Namespace) -> int:
    from ..components import KINDS, param_infos
    from ..plugins import load_registry

    modules: tuple[str, ...] = ()
    base_dir = Path(".")
    if args.recipe is not None:
        from ..recipe import read_toml

        raw = read_toml(args.recipe)
        modules = tuple(m for m in raw.get("plugins", []) if isinstance(m, str))
        base_dir = args.recipe.parent
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
                if args.verbose and cls is not None:
                    for p in param_infos(cls):
                        described = f"  {p.description}" if p.description else ""
                        print(f"        {p.name}: {p.type} = {p.default}{described}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from ..recipe import load_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    from ..checks import memory_warning

    dims = recipe.dims.component.dims(recipe.full_dim) if recipe.full_dim else None
    loaded = check_data(recipe) if args.data else None
    sizes = loaded[0] if loaded else data_size_hints(recipe)
    print(f"{args.recipe}: OK" + (" (data loaded and checked)" if args.data else ""))
    warning = memory_warning(recipe, full_dim=recipe.full_dim, **sizes)
    if warning:
        print(f"  warning   {warning}")
    print(f"  model     {recipe.model.requested}  ({recipe.model.origin}, {recipe.full_dim or '?'} dims)")
    print(f"  data      {recipe.data.name}  ({recipe.row_format} rows, plugin {recipe.data.plugin})")
    if loaded:  # the counts the run prints when it loads the same data
        from ..run.pipeline import data_lines

        for level, line in data_lines(recipe, *loaded[1:]):
            print(f"  {'warning   ' if level >= logging.WARNING else '          '}{line.strip()}")
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


def check_data(recipe: Recipe) -> tuple[dict[str, int | None], Any, dict[str, int]]:
    """Load the recipe's data, split off its validation set as the run does, and run every
    component's checks that need it: the data's sizes, the bundle and where validation came from."""
    from ..components import ValidationContext
    from ..errors import RecipeError
    from ..recipe import guarded_check, variant_specs
    from ..run.pipeline import read_data_source, with_validation

    bundle = read_data_source(recipe)
    ctx = ValidationContext(recipe.base_dir, recipe.full_dim, recipe.settings.eval.k, recipe.registry, bundle)
    specs = [s for s in (recipe.data, recipe.loss, recipe.dims, recipe.objective, recipe.warm_start,
                         *recipe.compare) if s]
    specs += variant_specs(recipe.compare, recipe.registry)
    problems = [f"{spec.where} {p}" for spec in specs for p in guarded_check(spec, ctx)]
    if problems:
        raise RecipeError(f"{recipe.path} (checked against its data)", problems)
    sizes: dict[str, int | None] = {"eval_texts": len(bundle.eval.queries) + len(bundle.eval.corpus),
                                    "fit_texts": len(bundle.training_texts("all"))}
    return (sizes, *with_validation(recipe, bundle))


def cmd_run(args: argparse.Namespace) -> int:
    from ..recipe import load_recipe

    out = None
    recipe_path, overrides = args.recipe, list(args.overrides)
    from ..run.staging import staging_dir

    interrupted = args.resume and staging_dir(args.recipe).is_dir()
    if args.recipe.is_dir() or args.recipe.name.endswith(".partial") or interrupted:
        if not args.resume:
            raise UserError(f"{args.recipe}: a folder, not a recipe; to continue an interrupted run there, pass "
                            f"--resume (mrl-run --resume {args.recipe}).")
        from ..run.staging import staged_invocation

        recipe_path, out, saved = staged_invocation(args.recipe)
        overrides = saved + overrides
    recipe = load_recipe(recipe_path, overrides)
    setup_logging(quiet=args.quiet)

    from ..report import format_table
    from ..run import run

    results = run(recipe, overwrite=args.overwrite, resume=args.resume, out=out)
    if results is None:  # a non-zero rank under torchrun: rank 0 reports
        return 0
    print()
    print(format_table(results))
    print("Model, results.json, report.md with its plots, the evaluation set and the resolved recipe: "
          f"{recipe.output_dir}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from ..evidence.rundir import RunDir
    from ..report import format_table, write_report

    run = RunDir.open(args.output_dir)
    results = run.results()
    write_report(run.path, results)
    print(format_table(results))
    print(f"Rewrote {run.report_file} and {run.metrics_plot} from {run.results_file.name}.")
    return 0




def cmd_sweep(args: argparse.Namespace) -> int:
    try:
        import optuna
    except ImportError:
        raise UserError("mrl-run sweep needs Optuna: pip install 'mrl-plugins[sweep]'.") from None
    from .. import sweep as sweeps

    setup_logging(quiet=args.quiet)
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # a failed trial is reported once, by the sweep
    import warnings

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeats, plots
    sweep = sweeps.Sweep.open(args.recipe, list(args.overrides), storage=args.storage, trials=args.trials)
    study = sweep.optimize()
    if args.worker:
        print(f"sweep '{study.study_name}': this worker is done ({len(study.trials)} trials in the study).")
        return 0
    params = sweeps.write_outputs(sweep, study)
    print(f"sweep '{study.study_name}': best validation {study.best_value:.4f} with "
          f"{', '.join(sweeps.assignments(params))} (trials: {sweep.folder / 'sweep.md'}).")
    results = sweeps.final_run(sweep, params)
    if results is not None:
        from ..report import format_table

        print()
        print(format_table(results))
        print(f"The best recipe, run once and scored on the evaluation set: {sweep.folder / 'final'}")
    return 0
