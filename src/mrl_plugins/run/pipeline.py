"""One run, top-down: set up → evaluate base → train → evaluate → compare → save.

Two choices worth knowing, and why:

* Comparisons that need training (the ``no-mrl`` control) do not train inside ``run()``: they
  declare :class:`~mrl_plugins.components.Variant` s, which join the run's models and are
  trained in the training stage. Under torchrun every rank must take part in every training,
  but only rank 0 scores; declaring variants keeps both true, and lets ``--resume`` reuse them.
* With a warm start the run also trains the same recipe without it (``mrl-plain``), so a report
  never shows a warm start without the evidence of what it changed.
"""

from __future__ import annotations

import logging
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from importlib import metadata
from pathlib import Path
from typing import Any

from .. import __version__
from ..component_errors import plugin_call
from ..components import ValidationContext
from ..data.near_duplicates import find_near_duplicates
from ..data.types import DataBundle, RowFormat
from ..errors import PluginError, UserError
from ..evidence.results import BASE, PRIMARY, DataInfo, ModelInfo, ModelResult, RunResults, TaskResult, TrainingFacts
from ..evidence.rundir import RunDir
from ..evidence.saved import save_evaluation, save_per_query, save_validation_queries
from ..models import full_width, load_model, pick_device
from ..recipe import checks
from ..recipe.data import data_lines, read_data_source, with_validation
from ..recipe.load import Recipe, variant_specs
from .context import Distributed, RunContext
from .scoring import (
    Embeddings,
    attach_statistics,
    choice_checks,
    evaluate_model,
    recommendation_tests,
    run_comparison,
    truncation_costs,
)
from .staging import Staging
from .tasks import score_tasks
from .training import train_models

logger = logging.getLogger("mrl_plugins")


Documents = Callable[[RunDir, RunResults, Recipe], None]
"""What a caller writes for people into the run folder, from its results, before the folder is put
in place: the model's card and default width, the report
(:func:`mrl_plugins.publish.documents.write_run_documents`, which ``mrl-run`` and the sweep pass).
It may fill ``results.publish``; results.json is written after it. The engine itself writes the
evidence alone (results.json, the resolved recipe, the evaluation set) and imports no presenter or
publisher."""


def run(recipe: Recipe, *, overwrite: bool = False, resume: bool = False, out: Path | None = None,
        trial: Any = None, documents: Documents | None = None) -> RunResults | None:
    """Run a validated recipe end to end; rank 0 returns what it wrote to results.json.
    ``out`` (with ``resume``): the output folder of the interrupted run to continue. ``trial``: a
    sweep's trial (:class:`mrl_plugins.sweep.study.TrialHooks`): the run is then scored on its
    validation split only, never on the evaluation set. ``documents``: what the caller writes
    beside the evidence (:data:`Documents`); pushing to the Hub is the caller's too."""
    dist = Distributed.from_env()
    staging = Staging.for_run(recipe, resume=resume, out=out)
    recipe.output_dir = staging.out
    changes: list[str] = []
    if dist.is_main:
        staging.acquire()  # one run per output folder: a second one is refused, naming this one
    try:
        if dist.is_main:
            staging.prepare(overwrite=overwrite, resume=resume)
            changes = record_or_check(recipe, staging, resume)
        with staging.guard(is_main=dist.is_main):
            ctx = setup(recipe, staging, dist, resume)
            ctx.trial = trial
            results = execute(ctx)
            if results is None:  # not rank 0: rank 0 scores, writes and reports
                return None
            if changes:
                results.resumed_with_changes = changes
            save(ctx, results, documents)
            staging.finalize()
    finally:
        staging.release()
    logger.info("results in %s", staging.out)
    return results


def record_or_check(recipe: Recipe, staging: Staging, resume: bool) -> list[str]:
    """A fresh run records what it trains; a resumed one must train the same (else it is refused)."""
    trained = {m.key: [m.trained_with.objective, m.trained_with.warm_start, m.trained_with.seed]
               for m in recipe.models.trained()}
    if resume:
        changes = staging.check_resume(recipe.resolved(), trained)
        for change in changes:
            logger.warning("resuming with a changed recipe (it does not affect the trained models): %s", change)
        return changes
    staging.record_recipe(recipe.resolved(), trained)
    return []


def setup(recipe: Recipe, staging: Staging, dist: Distributed, resume: bool) -> RunContext:
    from transformers import set_seed

    set_seed(recipe.settings.seed)
    device = check_device(pick_device(recipe.settings.model.device))
    if dist.world_size > 1 and device.startswith("cuda"):
        device = f"cuda:{dist.local_rank}"
    if not dist.is_main:
        logger.setLevel(logging.WARNING)
    return RunContext(recipe, staging, dist, device, resume)


def check_device(device: str) -> str:
    """The exact check validate could only estimate: the device exists for torch."""
    import torch

    if device.startswith("cuda"):
        index = int(device.split(":")[1]) if ":" in device else 0
        if not torch.cuda.is_available() or index >= torch.cuda.device_count():
            found = torch.cuda.device_count() if torch.cuda.is_available() else 0
            raise UserError(f"[model] device: '{device}' is not available (torch sees {found} CUDA device(s)); use "
                            "device = \"auto\" or \"cpu\".")
    if device.startswith("mps") and not torch.backends.mps.is_available():
        raise UserError(f"[model] device: '{device}' is not available here; use device = \"auto\" or \"cpu\".")
    return device


def execute(ctx: RunContext) -> RunResults | None:
    """The stages; every rank trains, rank 0 alone scores and returns the results."""
    load_data(ctx)
    load_base_model(ctx)
    mine_negatives(ctx)
    check_with_data(ctx)
    emb = ctx.embeddings = Embeddings(ctx)
    if ctx.trial is not None and ctx.bundle.validation is None:
        raise UserError(f"{ctx.recipe.path}: a sweep trial chooses on the validation split, and [validation] "
                        "queries = 0 turns it off; give it queries (the default is 200).")
    base = None
    if ctx.dist.is_main and ctx.trial is None:  # a sweep's trial never scores the evaluation set
        base = evaluate_model(ctx, emb, BASE)
    training = train_models(ctx)
    end_process_group()
    if not ctx.dist.is_main:
        return None
    val = Embeddings(ctx, "validation") if ctx.bundle.validation else None
    splits = [e for e in (val, None if ctx.trial is not None else emb) if e is not None]  # a trial: validation only
    scored = {e.split: score_models(ctx, e, base if e is emb else None) for e in splits}  # base: scored above
    # comparison by comparison, validation first: one may choose there what its evaluation pass uses (the
    # adaptor's stopping epoch), and an interrupted run keeps each comparison's pair of passes
    for i, spec in enumerate(ctx.recipe.compare):
        for e in splits:
            scored[e.split] += run_comparison(ctx, e, spec, i)
    for e in splits:
        add_costs(ctx, e, scored[e.split])
    validation = scored.get("validation", [])
    if ctx.trial is not None:
        return assemble(ctx, [], training, validation)  # a trial scored the validation split alone
    columns = scored["eval"]
    attach_statistics(ctx, columns)
    results = assemble(ctx, columns, training, validation, score_tasks(ctx, emb) if ctx.recipe.tasks else {})
    results.tests = recommendation_tests(ctx, results)
    results.checks = choice_checks(ctx, results)
    return results


def score_models(ctx: RunContext, emb: Embeddings, base: ModelResult | None = None) -> list[ModelResult]:
    """The run's models on one split (the base model, unless already scored, then the trained ones)."""
    base = base or evaluate_model(ctx, emb, BASE)
    return [base, *(evaluate_model(ctx, emb, m.key) for m in ctx.recipe.models.with_role("plain", "mrl", "seed"))]


def add_costs(ctx: RunContext, emb: Embeddings, columns: list[ModelResult]) -> None:
    """A model's own column is plain truncation, searched exactly: what that costs, timed on this
    split, and its recall of the model's exact full-width top k (``overlap@k``), as every search
    configuration reports it."""
    from ..evaluation.encode import normalise
    from ..evaluation.metrics import overlap_key
    from ..evaluation.retrieval import overlap_at_k, top_k

    costs, k = truncation_costs(ctx, emb), ctx.settings.eval.k
    for column in columns:
        if column.kind == "model":
            column.costs = costs
            enc = emb.encoded(column.key)
            unit_q, unit_c = normalise(enc.queries), normalise(enc.corpus)
            exact = top_k(unit_q, unit_c, k)
            for d in ctx.dims:
                ranked = exact if d == ctx.full_dim else top_k(normalise(enc.queries[:, :d]),
                                                               normalise(enc.corpus[:, :d]), k)
                column.metrics[d][overlap_key(k)] = round(overlap_at_k(ranked, exact, k, queries=unit_q,
                                                                       corpus=unit_c), 4)


def end_process_group() -> None:
    """After training nothing is collective: every rank leaves the process group together, so no
    rank exits while another still holds a connection to it."""
    import torch.distributed as torch_dist

    if torch_dist.is_available() and torch_dist.is_initialized():
        torch_dist.barrier()
        torch_dist.destroy_process_group()


def load_data(ctx: RunContext) -> None:
    recipe = ctx.recipe
    with ctx.stage("load_data", f"loading data from '{recipe.data.name}'"):
        ctx.data, ctx.validation_from = with_validation(recipe, read_data_source(recipe))
    say_data(recipe, ctx.data, ctx.validation_from)
    ctx.near_duplicates = near_copies(ctx.data)
    if ctx.data.validation is not None:  # the same check, of the set every choice is made on
        ctx.validation_near_duplicates = near_copies(ctx.data, "validation")


def near_copies(bundle: DataBundle, split: str = "eval") -> dict[str, Any]:
    """Evaluation (or validation) texts with a near-copy in training, said on the console with
    examples: not refused (a near-copy may be a fair neighbour), but a score that flatters the model
    is one the user should see coming. A source whose items come in families holds out whole
    families (``split_by_query(..., groups=...)``; the built-in ``manpages`` and ``docstrings``
    have ``hold_out = "family"``)."""
    ir = bundle.eval if split == "eval" else bundle.validation
    assert ir is not None
    found = find_near_duplicates(bundle.training_texts(), ir)
    what = {"eval": "held-out", "validation": "validation"}[split]
    if found.queries or found.documents:
        shown = "; ".join(f"{e['side']} '{e['text'][:60]}' ~ training '{e['training_text'][:60]}' "
                          f"(Jaccard {e['jaccard']})" for e in found.examples[:3])
        logger.warning("near-copies of %s texts in training: %d of %d queries and %d of %d relevant documents "
                       "share ≥ %d%% of their word 3-grams with a training text (e.g. %s); scores may flatter the "
                       "model. Hold out whole families (see docs/plugin-guide.md, split_by_query groups) if these "
                       "are siblings.", what, found.queries, len(ir.queries), found.documents,
                       len(ir.relevant_texts()), round(100 * found.threshold), shown)
    return found.as_dict()


def say_data(recipe: Recipe, bundle: DataBundle, validation_from: dict[str, int]) -> None:
    """What the data holds, on the console (``mrl-run validate --data`` prints the same lines)."""
    for level, line in data_lines(recipe, bundle, validation_from):
        logger.log(level, "%s", line)


def mine_negatives(ctx: RunContext) -> None:
    """``[mining]``: hard negatives for the training pairs, from the training rows' own positives
    (never validation or evaluation texts); pairs without a negative inside the margin are left
    out. What it kept and what it cost go into results.json (``data.summary.mining``)."""
    m = ctx.settings.mining
    if m is None:
        return
    from ..models import resolve_model
    from ..models.compat import mine_hard_negatives

    bundle = ctx.bundle
    if m.model == "base":
        model = ctx.loaded[BASE]
    else:
        model = load_model(resolve_model(m.model, ctx.recipe.base_dir), device=ctx.device,
                           max_seq_length=ctx.settings.model.max_seq_length)
    with ctx.stage("mine_negatives", f"mining {m.num_negatives} hard negative(s) per training pair with {m.model}"):
        t0 = time.perf_counter()
        mined = mine_hard_negatives(
            bundle.train, model, anchor_column_name="anchor", positive_column_name="positive",
            range_min=m.range_min, range_max=m.range_max, relative_margin=m.relative_margin,
            absolute_margin=m.absolute_margin, num_negatives=m.num_negatives, sampling_strategy=m.sampling_strategy,
            batch_size=m.batch_size, output_format="triplet", verbose=False,
            progress=logger.getEffectiveLevel() <= logging.INFO,
        )
        seconds = time.perf_counter() - t0
    if len(mined) == 0:
        raise UserError(f"{ctx.recipe.path}: [mining] found no negative inside the margin for any of the "
                        f"{len(bundle.train)} training pairs; lower relative_margin, or raise range_max.")
    mined = mined.select_columns(["anchor", "positive", "negative"])
    facts = {"model": m.model, "pairs": len(bundle.train), "triplets": len(mined),
             "pairs_without_negative": len(set(bundle.train["anchor"]) - set(mined["anchor"])),
             "seconds": round(seconds, 2)}
    logger.info("          %d triplets from %d pairs in %.1f s", len(mined), len(bundle.train), seconds)
    ctx.data = replace(bundle, train=mined, row_format=RowFormat.TRIPLETS, summary={**bundle.summary, "mining": facts})


def check_with_data(ctx: RunContext) -> None:
    """The checks that need the data (PCA's fitting texts, …), before anything trains."""
    from ..errors import RecipeError

    recipe = ctx.recipe
    vctx = ValidationContext(recipe_dir=recipe.base_dir, full_dim=ctx.full_dim, k=ctx.settings.eval.k,
                             registry=recipe.registry, data=ctx.bundle)
    specs = [s for s in (recipe.data, recipe.loss, recipe.dims, recipe.objective, recipe.warm_start,
                         *recipe.compare) if s]
    specs += variant_specs(recipe.compare, recipe.registry)
    problems = [f"{spec.where} {p}" for spec in specs for p in plugin_call(spec, "check", vctx)]
    if problems:
        raise RecipeError(f"{recipe.path} (checked against the loaded data, before training)", problems)
    bundle = ctx.bundle
    warning = checks.memory_warning(recipe, full_dim=ctx.full_dim,
                                    eval_texts=len(bundle.eval.queries) + len(bundle.eval.corpus),
                                    fit_texts=len(bundle.training_texts("all")))
    if warning:
        logger.warning("warning: %s", warning)


def load_base_model(ctx: RunContext) -> None:
    recipe, s = ctx.recipe, ctx.settings
    with ctx.stage("load_model", f"loading {recipe.model.requested} ({recipe.model.origin}) on {ctx.device}"):
        base = load_model(recipe.model, device=ctx.device, max_seq_length=s.model.max_seq_length)
        ctx.full_dim = full_width(base)  # runs use the full width, whatever truncate_dim the model carries
        schedule = recipe.dims.component
        dims = schedule.dims(ctx.full_dim)
        problems = schedule.check(ValidationContext(recipe_dir=recipe.base_dir, full_dim=ctx.full_dim))
        if problems or any(d > ctx.full_dim for d in dims):
            found = problems or [f"{dims} exceed the model's {ctx.full_dim}"]
            raise UserError(f"{recipe.path}: [dims] " + "; ".join(found))
        ctx.dims, ctx.weights = dims, schedule.weights(dims)
        ctx.loaded[BASE] = base


def assemble(ctx: RunContext, columns: list[ModelResult], training: dict[str, TrainingFacts],
             validation: list[ModelResult], tasks: dict[str, TaskResult] | None = None) -> RunResults:
    recipe, bundle, s = ctx.recipe, ctx.bundle, ctx.settings
    val = bundle.validation
    return RunResults(
        name=s.name,
        model=ModelInfo(name=recipe.model.requested, origin=recipe.model.origin, full_dim=ctx.full_dim),
        dims=ctx.dims,
        weights=ctx.weights,
        k=s.eval.k,
        device=ctx.device,
        data=DataInfo(source=recipe.data.name, row_format=str(bundle.row_format), train_rows=len(bundle.train),
                      eval_queries=len(bundle.eval.queries), corpus=len(bundle.eval.corpus), summary=bundle.summary,
                      validation_queries=len(val.queries) if val else 0,
                      validation_corpus=len(val.corpus) if val else 0,
                      validation_from=ctx.validation_from, card=card_metadata(recipe),
                      near_duplicates=ctx.near_duplicates, validation_near_duplicates=ctx.validation_near_duplicates),
        train=training,
        models={c.key: c for c in columns},
        validation={c.key: c for c in validation},
        validation_scores=primary_scores(ctx.validation_per_query, s.eval.k),
        serving_corpus_size=s.serving.corpus_size,
        tasks=tasks or {},
        trial=ctx.trial.describe() if ctx.trial is not None else None,
        timings=ctx.stages.timings,
        versions=versions(),
        plugins=[asdict(p) for p in recipe.registry.plugins.values()],
    )


def primary_scores(per_query: dict[str, dict[int, dict[str, Any]]], k: int) -> dict[str, dict[int, list[float]]]:
    """Each column's per-query :data:`~mrl_plugins.evidence.results.PRIMARY` score at each width,
    rounded as results.json keeps it."""
    key = PRIMARY.key(k)
    return {column: {int(d): [round(float(v), 4) for v in by[key]] for d, by in dims.items()}
            for column, dims in per_query.items()}


def save(ctx: RunContext, results: RunResults, documents: Documents | None) -> None:
    """The evaluation set and embeddings, what the caller writes for people (the model's default
    dimension and card, the report), results.json and the resolved recipe."""
    import tomli_w

    run = ctx.staging.run
    folder = run.path
    if ctx.trial is None:  # a sweep's trial never encoded the evaluation set
        encoded = {m.key: ctx.embeddings.cache[m.key] for m in ctx.recipe.models if m.key in ctx.embeddings.cache}
        save_evaluation(folder, ctx.bundle.eval, encoded)
        save_per_query(folder, ctx.per_query)
        if ctx.bundle.validation is not None:  # what 'mrl-run index RUN …' tunes with
            save_validation_queries(folder, ctx.bundle.validation)
    if documents is not None:
        documents(run, results, ctx.recipe)
    results.save(folder)
    run.recipe_file.write_text(tomli_w.dumps(ctx.recipe.resolved()))


def versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "mrl-plugins": __version__}
    for dist in ("sentence-transformers", "transformers", "torch", "datasets", "pluggy", "huggingface-hub",
                 "scikit-learn"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


CARD_KEYS = {"datasets": "a list of Hub dataset ids", "license": "a licence id (e.g. apache-2.0, cc-by-4.0)",
             "language": "a language code or a list of them", "tags": "a list of strings"}


def card_metadata(recipe: Recipe) -> dict[str, Any]:
    """The data source's contribution to the model card's front matter, checked: only the keys
    a card takes from data (:data:`CARD_KEYS`), strings or lists of strings."""
    found = plugin_call(recipe.data, "card_metadata")
    who = f"data source '{recipe.data.name}' (plugin '{recipe.data.plugin}')"
    if not isinstance(found, dict):
        raise PluginError(f"{who}: card_metadata() returned {type(found).__name__}, not a dict; a bug in that plugin.")
    out: dict[str, Any] = {}
    for key, value in found.items():
        if key not in CARD_KEYS:
            raise PluginError(f"{who}: card_metadata() gave '{key}', which a card does not take from a data source "
                              f"(it takes {', '.join(CARD_KEYS)}); a bug in that plugin.")
        strings = [value] if isinstance(value, str) else value
        if not isinstance(strings, list) or not all(isinstance(v, str) and v.strip() for v in strings) or (
                key == "license" and not isinstance(value, str)):
            raise PluginError(f"{who}: card_metadata() gave {key} = {value!r}; it must be {CARD_KEYS[key]}.")
        out[key] = value
    return out
