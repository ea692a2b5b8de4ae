"""The pipeline of one run, a function per stage.

load data → evaluate base → train (base loss in MatryoshkaLoss) → evaluate tuned → compare →
save → report. Everything is written into a hidden staging folder beside the output directory
and moved into place only when the run has finished, so an interrupted run never leaves a
half-written model or results where a finished run would be.

Two departures from the first architecture sketch, and why:

* Comparisons that need training (the ``no-mrl`` control) do not train inside ``run()``: they
  declare :class:`~mrl_plugins.components.Variant` s and the runner trains every variant in its
  training stage. Under torchrun every rank must take part in every training, but only rank 0
  runs comparisons; declaring variants keeps both true, and lets ``--resume`` reuse them.
* With a warm start the runner also trains the same recipe without it (``mrl-plain``), so a
  report never shows a warm start without the evidence of what it changed.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import shutil
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .components import ComparisonContext, Metrics, ValidationContext, Variant
from .data import ROW_COLUMNS, DataBundle, DataRequest, find_leaks
from .errors import UserError
from .evaluation import EncodedIRSet, encode_ir_set, encode_texts, index_ir_set, score_dims
from .models import ResolvedModel, load_model, mixed_precision, pick_device, resolve_model
from .publish import push, write_publication
from .recipe import Recipe

logger = logging.getLogger("mrl_plugins")


@dataclass
class Stages:
    """Logs one line per stage with the time since the run started, and keeps the durations."""

    start: float = field(default_factory=time.perf_counter)
    timings: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def stage(self, key: str, message: str):
        logger.info("[%7.1fs] %s", time.perf_counter() - self.start, message)
        t0 = time.perf_counter()
        yield
        self.timings[key] = round(time.perf_counter() - t0, 3)


def embedding_dim(model: Any) -> int:
    getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return getter()


def check_output_dir(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"output_dir '{out}' exists and is a file; choose another output_dir.")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise UserError(
            f"output directory '{out}' is not empty; nothing was changed. Choose another one "
            f"(--set output_dir=...) or pass --overwrite to replace it."
        )


def seed_everything(seed: int) -> None:
    from transformers import set_seed

    set_seed(seed)


def load_data(recipe: Recipe) -> DataBundle:
    source = recipe.data.build()
    bundle = source.load(DataRequest(row_format=recipe.row_format, seed=recipe.settings.seed, recipe_dir=recipe.base_dir))
    expected = list(ROW_COLUMNS[recipe.row_format])
    if list(bundle.train.column_names) != expected:
        raise UserError(
            f"data source '{recipe.data.name}' returned columns {bundle.train.column_names}, expected {expected} "
            f"(plugin '{recipe.data.plugin}' does not follow the contract)."
        )
    leaked = find_leaks(training_texts(bundle), bundle.eval)
    if any(leaked):
        raise UserError(
            f"data source '{recipe.data.name}' leaks: {leaked[0]} evaluation queries and {leaked[1]} relevant "
            "documents also occur in the training rows. Fix the data or the source's split."
        )
    if not bundle.eval.queries:
        raise UserError(f"data source '{recipe.data.name}' produced an empty evaluation set; nothing to measure.")
    return bundle


SIDES = {"queries": ("anchor", "sentence1"), "documents": ("positive", "negative", "sentence2")}


def training_texts(bundle: DataBundle, side: str = "all") -> list[str]:
    """Distinct training texts: ``"queries"``, ``"documents"`` or ``"all"`` of them."""
    cols = [c for c in bundle.train.column_names if c != "score" and (side == "all" or c in SIDES[side])]
    return list(dict.fromkeys(t for col in cols for t in bundle.train[col]))


def matryoshka_schedule(recipe: Recipe, full_dim: int) -> tuple[list[int], list[float] | None]:
    schedule = recipe.dims.build()
    dims = schedule.dims(full_dim)
    problems = schedule.check(ValidationContext(recipe_dir=recipe.base_dir, full_dim=full_dim))
    if problems or any(d > full_dim for d in dims):
        raise UserError(f"{recipe.path}: [dims] " + "; ".join(problems or [f"{dims} exceed the model's {full_dim}"]))
    return dims, schedule.weights(dims)


@dataclass(frozen=True)
class Distributed:
    """This process's place in a torchrun / accelerate launch (rank 0 of 1 when run plainly)."""

    rank: int = 0
    world_size: int = 1

    @classmethod
    def from_env(cls) -> Distributed:
        return cls(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)))

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def last_checkpoint(folder: Path) -> Path | None:
    if not folder.is_dir():
        return None
    steps = [(int(p.name.split("-")[1]), p) for p in folder.glob("checkpoint-*") if p.name.split("-")[1].isdigit()]
    return max(steps)[1] if steps else None


def _trainer_callbacks() -> list[Any]:
    """Extra trainer callbacks (tests use this seam to interrupt a run mid-training)."""
    return []


def train(
    recipe: Recipe, model: Any, bundle: DataBundle, dims: list[int], weights: list[float] | None,
    work_dir: Path, device: str, *, matryoshka: bool = True, resume: bool = False,
) -> dict[str, Any]:
    """Fine-tune ``model`` in place: the recipe's loss, wrapped in MatryoshkaLoss unless a control.

    Checkpoints go to ``work_dir`` every ``[train] checkpoint_steps``; with ``resume`` training
    continues from the newest one there. Returns facts for results.json.
    """
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments

    from ._st import st_losses

    t = recipe.settings.train
    loss_component = recipe.loss.build()
    loss = loss_component.build(model)
    if matryoshka:
        loss = st_losses().MatryoshkaLoss(model, loss, matryoshka_dims=dims, matryoshka_weights=weights)
    dist = Distributed.from_env()
    steps_per_epoch = math.ceil(len(bundle.train) / (t.batch_size * dist.world_size))
    total = t.max_steps or math.ceil(steps_per_epoch * t.epochs)
    checkpointing = t.checkpoint_steps > 0
    args = SentenceTransformerTrainingArguments(
        output_dir=str(work_dir),
        num_train_epochs=t.epochs,
        max_steps=t.max_steps or -1,
        per_device_train_batch_size=t.batch_size,
        learning_rate=t.learning_rate,
        warmup_steps=math.ceil(total * t.warmup_ratio),
        weight_decay=t.weight_decay,
        batch_sampler=loss_component.batch_sampler,
        seed=recipe.settings.seed,
        data_seed=recipe.settings.seed,
        logging_steps=t.logging_steps,
        save_strategy="steps" if checkpointing else "no",
        save_steps=t.checkpoint_steps if checkpointing else 500,
        save_total_limit=2 if checkpointing else None,
        report_to="none",
        use_cpu=device == "cpu",
        ddp_backend="gloo" if device == "cpu" and dist.world_size > 1 else None,
        disable_tqdm=logger.getEffectiveLevel() > logging.INFO,
        **mixed_precision(device, recipe.settings.model.precision),
    )
    trainer = SentenceTransformerTrainer(
        model=model, args=args, train_dataset=bundle.train, loss=loss, callbacks=_trainer_callbacks()
    )
    if args.disable_tqdm:  # quiet: transformers would print every log dict instead of a bar
        from transformers import PrinterCallback

        trainer.remove_callback(PrinterCallback)
    checkpoint = last_checkpoint(work_dir) if resume else None
    if checkpoint:
        logger.info("          resuming from %s", checkpoint)
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    return {
        "steps": trainer.state.global_step,
        "world_size": args.world_size,
        "matryoshka": matryoshka,
        "resumed_from": checkpoint.name if checkpoint else None,
    }


class Embeddings:
    """Full-dimension evaluation embeddings per model, each model encoded once per run."""

    def __init__(self, recipe: Recipe, bundle: DataBundle, device: str, models: dict[str, Any]):
        self.recipe, self.bundle, self.device, self.models = recipe, bundle, device, models
        self.cache: dict[str, EncodedIRSet] = {}
        self.progress = logger.getEffectiveLevel() <= logging.INFO

    @staticmethod
    def _key(key: str) -> str:
        return "tuned" if key == "mrl" else key  # recipes may call the saved model "mrl"

    def model(self, key: str) -> Any:
        key = self._key(key)
        if key not in self.models:
            resolved = resolve_model(key, self.recipe.base_dir)
            self.models[key] = load_model(resolved, device=self.device, max_seq_length=self.recipe.settings.model.max_seq_length)
        return self.models[key]

    def encoded(self, key: str) -> EncodedIRSet:
        key = self._key(key)
        if key not in self.cache:
            bs = self.recipe.settings.eval.batch_size
            self.cache[key] = encode_ir_set(self.model(key), self.bundle.eval, batch_size=bs, progress=self.progress)
        return self.cache[key]

    def pair(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        enc = self.encoded(key)
        return enc.queries, enc.corpus

    def metrics(self, key: str, dims: list[int]) -> dict[int, Metrics]:
        enc = self.encoded(key)
        return score(self.recipe, enc.queries, enc.corpus, enc.relevant, dims)

    def encode(self, key: str, texts: list[str]) -> np.ndarray:
        return encode_texts(self.model(key), texts, role="document", batch_size=self.recipe.settings.eval.batch_size,
                            progress=self.progress)


def score(recipe: Recipe, queries: np.ndarray, corpus: np.ndarray, relevant: list[set[int]], dims: list[int]) -> dict[int, Metrics]:
    """The recipe's metrics at every dimension for full-dimension query and corpus arrays."""
    e = recipe.settings.eval
    return score_dims(queries, corpus, relevant, dims, k=e.k, corpus_chunk=e.corpus_chunk_size)


def versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "mrl-plugins": __version__}
    for dist in ("sentence-transformers", "transformers", "torch", "datasets", "pluggy", "huggingface-hub", "scikit-learn"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def _metrics_json(metrics: dict[int, Metrics]) -> dict[str, Metrics]:
    return {str(d): {k: round(v, 6) for k, v in m.items()} for d, m in metrics.items()}


def finalize(staging: Path, out: Path) -> None:
    """Move the finished staging folder into place; an old output is replaced only at the end."""
    if out.exists():
        old = out.with_name(f".{out.name}.replaced-{os.getpid()}")
        out.rename(old)
        staging.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        staging.rename(out)


def staging_dir(out: Path) -> Path:
    """Where a run is assembled: hidden, beside the output, the same for every rank and resume."""
    return out.with_name(f".{out.name}.partial")


def find_resumable(recipe: Recipe) -> Path:
    """The output directory of the newest interrupted run of this recipe (for ``--resume``)."""
    template = recipe.settings.output_dir.format(name=recipe.settings.name, timestamp="*")
    pattern = Path(template)
    candidates = sorted(pattern.parent.glob(f".{pattern.name}.partial"), key=lambda p: p.stat().st_mtime)
    if not candidates:
        raise UserError(
            f"--resume: no interrupted run of '{recipe.path}' to resume (looked for "
            f"{pattern.parent / ('.' + pattern.name + '.partial')}). Run it without --resume."
        )
    staged = candidates[-1]
    return staged.with_name(staged.name[1 : -len(".partial")])


def resumable_state(staging: Path) -> bool:
    """Whether a staging folder holds checkpoints or finished models that --resume would reuse."""
    return any((staging / "checkpoints").glob("*/checkpoint-*")) or any((staging / "trained").glob("*.json"))


PLAIN_MRL = "mrl-plain"
"""Key of the MRL model trained without the warm start, when the recipe has one."""


class Interrupted(UserError):
    """A run stopped mid-way with checkpoints kept; the message says how to resume."""

    exit_code = 130


def run(recipe: Recipe, *, overwrite: bool = False, resume: bool = False) -> dict[str, Any] | None:
    """Run a validated recipe end to end; rank 0 returns the results written to results.json."""
    import tomli_w

    dist = Distributed.from_env()
    out = find_resumable(recipe) if resume else recipe.output_dir
    recipe.output_dir = out
    staging = staging_dir(out)
    if dist.is_main:
        check_output_dir(out, overwrite)
        if not resume and resumable_state(staging) and not overwrite:
            raise UserError(
                f"an interrupted run of this recipe left checkpoints in {staging}; nothing was changed. Continue it "
                f"with 'mrl-run {recipe.path} --resume', or pass --overwrite to discard them and start over."
            )
        if not resume:
            shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True, exist_ok=True)
    pub = recipe.settings.publish
    try:
        results = _run_stages(recipe, staging, dist, resume)
        if not dist.is_main:
            return None
        meta = write_publication(staging / "model", results, pub.truncate_dim, pub.repo_id)
        results["publish"] = {"truncate_dim": meta["truncate_dim"], "recommended_dims": meta["recommended_dims"]}
        write_results(staging, results)
        (staging / "recipe.toml").write_text(tomli_w.dumps(recipe.resolved()))
        write_report(staging, results)
        for scratch in ("checkpoints", "variants", "trained"):
            shutil.rmtree(staging / scratch, ignore_errors=True)
        finalize(staging, out)
    except BaseException as exc:
        if not dist.is_main:
            raise
        if not resumable_state(staging) or isinstance(exc, UserError):
            shutil.rmtree(staging, ignore_errors=True)
            raise
        resume_hint = f"nothing was written to {out}; continue with 'mrl-run {recipe.path} --resume' (state kept in {staging})"
        if isinstance(exc, KeyboardInterrupt):
            raise Interrupted(f"interrupted: {resume_hint}.") from None
        logger.error("the run failed: %s", resume_hint)
        raise
    logger.info("results in %s", out)
    if pub.push:
        publish_run(out, results, repo_id=pub.repo_id, private=pub.private, revision=pub.revision)
    return results


def write_results(folder: Path, results: dict[str, Any]) -> None:
    (folder / "results.json").write_text(json.dumps(results, indent=2) + "\n")


def write_report(folder: Path, results: dict[str, Any]) -> None:
    from .report import plot_metrics, report_markdown

    (folder / "report.md").write_text(report_markdown(results))
    plot_metrics(results, folder / "metrics.png")


def publish_run(out: Path, results: dict[str, Any], *, repo_id: str, private: bool, revision: str | None) -> str:
    """Push a finished run's model; record where it went in results.json."""
    url = push(out / "model", repo_id, private=private, revision=revision, output_dir=out)
    results["publish"] = {**results.get("publish", {}), "repo_id": repo_id, "revision": revision, "commit_url": url}
    write_results(out, results)
    return url


def apply_warm_start(recipe: Recipe, model: Any, bundle: DataBundle) -> dict[str, Any]:
    from .components import WarmStartContext

    ctx = WarmStartContext(
        seed=recipe.settings.seed,
        train_texts=lambda side="all": training_texts(bundle, side),
        encode=lambda texts, role="document": encode_texts(
            model, texts, role=role, batch_size=recipe.settings.eval.batch_size
        ),
    )
    return {"name": recipe.warm_start.name, **recipe.warm_start.build().apply(model, ctx)}


def train_or_reuse(
    key: str, recipe: Recipe, bundle: DataBundle, dims: list[int], weights: list[float] | None,
    staging: Path, device: str, *, matryoshka: bool, resume: bool, save_to: Path, warm_start: bool = False,
) -> tuple[Any, dict[str, Any]]:
    """Train one model (or reload it when a resumed run had already finished it)."""
    s = recipe.settings
    done = staging / "trained" / f"{key}.json"
    if resume and done.is_file():
        logger.info("          %s was trained before the interruption; reusing it", key)
        return load_model(ResolvedModel(key, str(save_to), "local path"), device=device,
                          max_seq_length=s.model.max_seq_length), json.loads(done.read_text())
    model = load_model(recipe.model, device=device, max_seq_length=s.model.max_seq_length)
    warm = apply_warm_start(recipe, model, bundle) if warm_start and recipe.warm_start else None
    facts = train(recipe, model, bundle, dims, weights, staging / "checkpoints" / key, device,
                  matryoshka=matryoshka, resume=resume)
    if warm:
        facts["warm_start"] = warm
    if Distributed.from_env().is_main:
        model.save(str(save_to))
        done.parent.mkdir(exist_ok=True)
        done.write_text(json.dumps(facts))
        shutil.rmtree(staging / "checkpoints" / key, ignore_errors=True)
    return model, facts


def _run_stages(recipe: Recipe, staging: Path, dist: Distributed, resume: bool) -> dict[str, Any] | None:
    st = Stages()
    s = recipe.settings
    seed_everything(s.seed)
    device = pick_device(s.model.device)
    if dist.world_size > 1 and device.startswith("cuda"):
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    if not dist.is_main:
        logger.setLevel(logging.WARNING)

    with st.stage("load_data", f"loading data from '{recipe.data.name}'"):
        bundle = load_data(recipe)
    logger.info(
        "          %d training rows (%s), %d evaluation queries, %d documents",
        len(bundle.train), bundle.row_format, len(bundle.eval.queries), len(bundle.eval.corpus),
    )
    with st.stage("load_model", f"loading {recipe.model.requested} ({recipe.model.origin}) on {device}"):
        base = load_model(recipe.model, device=device, max_seq_length=s.model.max_seq_length)
        full_dim = embedding_dim(base)
        dims, weights = matryoshka_schedule(recipe, full_dim)

    emb = Embeddings(recipe, bundle, device, {"base": base})
    if dist.is_main:
        with st.stage("evaluate_base", f"evaluating the base model at {len(dims)} dims {dims}"):
            base_metrics = emb.metrics("base", dims)

    comparisons = [spec.build() for spec in recipe.compare]
    variants = {v.key: v for c in comparisons for v in c.variants()}
    if recipe.warm_start:  # prove what the warm start bought: the same training without it
        variants = {PLAIN_MRL: Variant(PLAIN_MRL, matryoshka=True), **variants}
    training: dict[str, Any] = {}
    warm = f" after the '{recipe.warm_start.name}' warm start" if recipe.warm_start else ""
    with st.stage("train", f"training with {recipe.loss.name} in MatryoshkaLoss over dims {dims}{warm}"):
        tuned, training["mrl"] = train_or_reuse(
            "mrl", recipe, bundle, dims, weights, staging, device, matryoshka=True, resume=resume,
            save_to=staging / "model", warm_start=True,
        )
    emb.models["tuned"] = tuned
    for key, variant in variants.items():
        what = "with MatryoshkaLoss" if variant.matryoshka else f"with {recipe.loss.name} alone (no MatryoshkaLoss)"
        what += f" and the '{recipe.warm_start.name}' warm start" if variant.warm_start and recipe.warm_start else ""
        with st.stage(f"train:{key}", f"training the '{key}' control {what}"):
            emb.models[key], training[key] = train_or_reuse(
                key, recipe, bundle, dims, weights, staging, device, matryoshka=variant.matryoshka,
                resume=resume, save_to=staging / "variants" / key, warm_start=variant.warm_start,
            )
    if not dist.is_main:
        return None

    with st.stage("evaluate_tuned", f"evaluating the fine-tuned model at {len(dims)} dims"):
        tuned_metrics = emb.metrics("tuned", dims)

    models: dict[str, Any] = {"base": {"label": "base", "kind": "model", "metrics": _metrics_json(base_metrics)}}
    if recipe.warm_start:
        with st.stage("evaluate_plain_mrl", "evaluating the MRL model trained without the warm start"):
            plain = emb.metrics(PLAIN_MRL, dims)
        models[PLAIN_MRL] = {"label": "MRL", "kind": "model", "metrics": _metrics_json(plain)}
    label = f"MRL + {recipe.warm_start.name}" if recipe.warm_start else "MRL"
    models["mrl"] = {"label": label, "kind": "model", "metrics": _metrics_json(tuned_metrics)}
    _, _, relevant = index_ir_set(bundle.eval)
    ctx = ComparisonContext(
        dims=dims,
        eval_set=bundle.eval,
        embeddings=emb.pair,
        encode=emb.encode,
        train_texts=lambda side="documents": training_texts(bundle, side),
        score=lambda q, c: score(recipe, q, c, relevant, dims),
    )
    for spec, comparison in zip(recipe.compare, comparisons):
        with st.stage(f"compare:{comparison.label()}", f"comparison {comparison.label()}"):
            metrics = comparison.run(ctx)
        models[f"compare:{comparison.label()}"] = {
            "label": comparison.label(), "kind": "comparison", "component": spec.name, "metrics": _metrics_json(metrics),
        }

    return {
        "name": s.name,
        "model": {"name": recipe.model.requested, "origin": recipe.model.origin, "full_dim": full_dim},
        "dims": dims,
        "weights": weights,
        "k": s.eval.k,
        "device": device,
        "data": {
            "source": recipe.data.name,
            "row_format": bundle.row_format,
            "train_rows": len(bundle.train),
            "eval_queries": len(bundle.eval.queries),
            "corpus": len(bundle.eval.corpus),
            "summary": bundle.summary,
        },
        "train": training,
        "models": models,
        "timings": st.timings,
        "versions": versions(),
        "plugins": [asdict(p) for p in recipe.registry.plugins.values()],
    }
