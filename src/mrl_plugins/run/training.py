"""Training the run's models: trainer arguments, each model's loss, the warm start, DDP facts,
and reuse of finished models and checkpoints on ``--resume``.

Every rank of a torchrun / accelerate launch runs this module (the trainer's own DDP does the
distribution); only rank 0 saves. The models come from the recipe's namespace
(:mod:`mrl_plugins.run_models`): ``mrl`` first, then ``mrl-plain`` and every declared variant.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..component_errors import plugin_call
from ..components import ObjectiveContext, Role, TextSide, WarmStartContext
from ..errors import UserError, is_disk_full
from ..evaluation.encode import encode_texts
from ..evidence.results import MRL, TrainingFacts
from ..models import ResolvedModel, load_model, mixed_precision
from ..models.compat import strip_card_examples
from ..recipe.load import ComponentSpec
from ..recipe.run_models import RunModel, Training
from .context import RunContext

logger = logging.getLogger("mrl_plugins")


COMPLETE = "trainer_state.json"
"""The trainer writes this last into a checkpoint: a checkpoint without it was cut short."""


def last_checkpoint(folder: Path) -> Path | None:
    """The newest complete ``checkpoint-N`` folder, or ``None``. Incomplete ones (a run killed
    while writing them) are renamed ``incomplete-checkpoint-N``, kept, and never resumed from."""
    if not folder.is_dir():
        return None
    steps = sorted((int(p.name.split("-")[1]),
                    p) for p in folder.glob("checkpoint-*") if p.name.split("-")[1].isdigit())
    complete = [(step, p) for step, p in steps if (p / COMPLETE).is_file()]
    newest = complete[-1][0] if complete else -1
    for step, p in steps:
        if step > newest and not (p / COMPLETE).is_file():
            aside = p.with_name(f"incomplete-{p.name}")
            shutil.rmtree(aside, ignore_errors=True)
            p.rename(aside)
            logger.warning("%s was cut short while being written (no %s); set aside as %s, resuming from %s",
                           p.name, COMPLETE, aside.name, complete[-1][1].name if complete else "the start")
    return complete[-1][1] if complete else None


class NonFinite(UserError):
    """Training produced an infinite or NaN loss or gradient norm: the model would not learn."""


def finite_guard(what: str, spec: ComponentSpec[Any] | None) -> Any:
    """A trainer callback that stops training at the first logged non-finite loss or gradient
    norm, naming the objective and its parameters (the usual cause), instead of training on
    into a model that equals its start."""
    from transformers import TrainerCallback

    objective = (f"objective '{spec.name}' with {spec.params.model_dump(mode='json')}" if spec is not None
                 else "the base loss alone")

    class FiniteGuard(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None,
                   **kwargs: Any) -> None:
            for key in ("loss", "grad_norm", "train_loss"):
                value = (logs or {}).get(key)
                if isinstance(value, (int, float)) and not math.isfinite(value):
                    raise NonFinite(
                        f"training {what} stopped at step {state.global_step}: the {key.replace('_', ' ')} is {value} "
                        f"({objective}). The model would not learn; nothing was saved for it. Lower the objective's "
                        "weights or raise its temperature, or lower [train] learning_rate, and run again."
                    )

    return FiniteGuard()


def validation_curve(ctx: RunContext, run_model: RunModel, curve: list[dict[str, Any]]) -> Any:
    """A trainer callback that scores the model being trained on the validation split every
    ``[validation] eval_steps`` steps (and at the end), appending to ``curve``; a sweep's trial
    hears each score of the MRL model (:attr:`RunContext.trial`) and may stop it there (pruning)."""
    from transformers import TrainerCallback

    from ..evaluation.encode import encode_ir_set, index_ir_set
    from ..evaluation.retrieval import score_dims

    every, validation = ctx.settings.validation.eval_steps, ctx.bundle.validation
    if validation is None:
        return None
    if not every and not (ctx.trial is not None and run_model.key == MRL):
        return None
    val_set = validation  # narrowed for the closure below
    relevant, k = index_ir_set(val_set)[2], ctx.settings.eval.k
    if not every:  # a trial reports once per epoch unless told otherwise
        every = max(1, steps_per_epoch(ctx))

    patience = ctx.settings.validation.patience

    class ValidationCurve(TrainerCallback):
        scored, best, stale = -1, -1.0, 0

        def score(self, state: Any, model: Any, control: Any = None) -> None:
            if not ctx.dist.is_main or state.global_step == self.scored:
                return
            self.scored = state.global_step
            enc = encode_ir_set(model, val_set, batch_size=ctx.settings.eval.batch_size, progress=False)
            metrics = score_dims(enc.queries, enc.corpus, relevant, ctx.dims, k=k)
            curve.append({"step": state.global_step,
                          **{m: {d: round(float(metrics[d][m]), 6) for d in ctx.dims} for m in metrics[ctx.dims[0]]
                             if "@" in m}})
            if ctx.trial is not None and run_model.key == MRL:
                ctx.trial.report(state.global_step, metrics)  # raises to prune the trial
            mean = float(np.mean([metrics[d][f"mrr@{k}"] for d in ctx.dims]))
            self.best, self.stale = (mean, 0) if mean > self.best else (self.best, self.stale + 1)
            if patience and self.stale >= patience and control is not None:  # early stopping, on validation
                curve[-1]["stopped"] = True
                control.should_training_stop = True
                logger.info("          stopping '%s' at step %d: %d validation scores without a better one",
                            run_model.key, state.global_step, patience)

        def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
            if state.global_step % every == 0:
                self.score(state, model, control)

        def on_train_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
            self.score(state, model)

    return ValidationCurve()


def trainer_callbacks() -> list[Any]:
    """Extra trainer callbacks (tests use this seam to interrupt a run mid-training)."""
    return []


def objective_spec(ctx: RunContext, training: Training) -> ComponentSpec[Any] | None:
    """The objective a model trains with: the recipe's, none (a control), or a named one."""
    if training.objective == "none":
        return None
    if training.objective == "recipe":
        return ctx.recipe.objective
    return named_spec(ctx, "objective", training.objective)


def build_loss(ctx: RunContext, model: Any, training: Training) -> Any:
    """The recipe's base loss, wrapped by the model's training objective (none for a control)."""
    loss = plugin_call(ctx.recipe.loss, "build", model)
    spec = objective_spec(ctx, training)
    if spec is None:
        return loss
    return plugin_call(spec, "build", model, loss, ObjectiveContext(ctx.dims, ctx.weights, ctx.full_dim))


def steps_per_epoch(ctx: RunContext) -> int:
    """Optimiser steps in one pass over the training rows, all processes together."""
    return math.ceil(len(ctx.bundle.train) / (ctx.settings.train.batch_size * ctx.dist.world_size))


def trainer_arguments(ctx: RunContext, work_dir: Path, seed: int | None = None) -> Any:
    """The trainer's arguments from ``[train]``, the device, the precision and the launch."""
    from sentence_transformers import SentenceTransformerTrainingArguments

    t, seed = ctx.settings.train, ctx.settings.seed if seed is None else seed
    total = t.max_steps or math.ceil(steps_per_epoch(ctx) * t.epochs)
    checkpointing = t.checkpoint_steps > 0
    cpu = ctx.device == "cpu"
    return SentenceTransformerTrainingArguments(
        output_dir=str(work_dir),
        num_train_epochs=t.epochs,
        max_steps=t.max_steps or -1,
        per_device_train_batch_size=t.batch_size,
        learning_rate=t.learning_rate,
        warmup_steps=math.ceil(total * t.warmup_ratio),
        weight_decay=t.weight_decay,
        batch_sampler=ctx.recipe.loss.cls.batch_sampler,
        seed=seed,
        data_seed=seed,
        logging_steps=t.logging_steps,
        logging_first_step=True,  # the finite guard sees step 1, not only step logging_steps
        save_strategy="steps" if checkpointing else "no",
        save_steps=t.checkpoint_steps if checkpointing else 500,
        save_total_limit=2 if checkpointing else None,
        report_to="none",
        use_cpu=cpu,
        ddp_backend="gloo" if cpu and ctx.dist.world_size > 1 else None,
        disable_tqdm=logger.getEffectiveLevel() > logging.INFO,
        **mixed_precision(ctx.device, ctx.settings.model.precision),
    )


def train(ctx: RunContext, model: Any, run_model: RunModel) -> TrainingFacts:
    """Fine-tune ``model`` in place; with ``--resume``, from the newest checkpoint of this model."""
    from sentence_transformers import SentenceTransformerTrainer

    work_dir = ctx.staging.checkpoints(run_model.key)
    args = trainer_arguments(ctx, work_dir, run_model.trained_with.seed)
    guard = finite_guard(f"'{run_model.key}'", objective_spec(ctx, run_model.trained_with))
    curve: list[dict[str, Any]] = []
    scoring = validation_curve(ctx, run_model, curve)
    trainer = SentenceTransformerTrainer(
        model=model, args=args, train_dataset=ctx.bundle.train, loss=build_loss(ctx, model, run_model.trained_with),
        callbacks=[guard, *([scoring] if scoring else []), *trainer_callbacks()],
    )
    if args.disable_tqdm:  # quiet: transformers would print every log dict instead of a bar
        from transformers import PrinterCallback

        trainer.remove_callback(PrinterCallback)
    checkpoint = last_checkpoint(work_dir) if ctx.resume else None
    if checkpoint:
        logger.info("          resuming from %s", checkpoint)
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    spec = objective_spec(ctx, run_model.trained_with)
    return TrainingFacts(
        steps=trainer.state.global_step, world_size=args.world_size, matryoshka=run_model.trained_with.matryoshka,
        resumed_from=checkpoint.name if checkpoint else None, objective=spec.name if spec else None,
        seed=args.seed, curve=curve,
        losses=[(int(e["step"]), round(float(e["loss"]), 6)) for e in trainer.state.log_history if "loss" in e],
    )


class _WarmStartTexts(WarmStartContext):
    """The training texts of the run, encoded by the model being prepared."""

    def __init__(self, ctx: RunContext, model: Any):
        self.seed, self._ctx, self._model = ctx.settings.seed, ctx, model

    def train_texts(self, side: TextSide = "all") -> list[str]:
        return self._ctx.bundle.training_texts(side)

    def encode(self, texts: Sequence[str], role: Role = "document") -> np.ndarray:
        return encode_texts(self._model, list(texts), role=role, batch_size=self._ctx.settings.eval.batch_size)


def warm_start_spec(ctx: RunContext, training: Training) -> ComponentSpec[Any] | None:
    """The warm start a model gets: the recipe's, a named one (default parameters), or none."""
    if training.warm_start is True:
        return ctx.recipe.warm_start
    if isinstance(training.warm_start, str):
        return named_spec(ctx, "warm_start", training.warm_start)
    return None


def named_spec(ctx: RunContext, kind: str, name: str) -> ComponentSpec[Any]:
    registry = ctx.recipe.registry
    cls = registry.get(kind, name)
    return ComponentSpec(kind, name, cls, cls.Params(), registry.owner(kind, name), f"[{kind}] {name}")


def apply_warm_start(ctx: RunContext, model: Any, spec: ComponentSpec[Any]) -> dict[str, Any]:
    return {"name": spec.name, **plugin_call(spec, "apply", model, _WarmStartTexts(ctx, model))}


def train_or_reuse(ctx: RunContext, run_model: RunModel) -> tuple[Any, TrainingFacts]:
    """Train one model of the run (or reload it when a resumed run had already finished it)."""
    key, s = run_model.key, ctx.settings
    done, save_to = ctx.staging.done_marker(key), ctx.staging.model_dir(key)
    if ctx.resume and done.is_file():
        logger.info("          %s was trained before the interruption; reusing it", key)
        model = load_model(ResolvedModel(key, str(save_to), "local path"), device=ctx.device,
                           max_seq_length=s.model.max_seq_length)
        return model, TrainingFacts.model_validate_json(done.read_text())
    model = load_model(ctx.recipe.model, device=ctx.device, max_seq_length=s.model.max_seq_length)
    warm_spec = warm_start_spec(ctx, run_model.trained_with)
    warm = apply_warm_start(ctx, model, warm_spec) if warm_spec else None
    facts = train(ctx, model, run_model)
    facts.warm_start = warm
    if ctx.dist.is_main:
        if not s.publish.card_examples:
            strip_card_examples(model)
        save_model(model, save_to, key)
        done.parent.mkdir(exist_ok=True)
        done.write_text(facts.model_dump_json())
        shutil.rmtree(ctx.staging.checkpoints(key), ignore_errors=True)
    return model, facts


SAVE_RETRY_SECONDS = float(os.environ.get("MRL_SAVE_RETRY_SECONDS", "900"))
"""How long a trained model whose save met a full disk waits, in memory, for space to be freed."""
SAVE_POLL_SECONDS = 10.0


def save_model(model: Any, folder: Path, key: str) -> None:
    """Save a trained model. A full disk does not lose it: the weights stay in memory, the console
    says where to free how much space, and the save is retried as soon as there is room (for up to
    ``MRL_SAVE_RETRY_SECONDS``, 15 minutes by default); only then does the run stop."""
    from .staging import DiskFull

    need = sum(p.numel() * p.element_size() for p in model.parameters()) + (16 << 20)
    deadline = time.monotonic() + SAVE_RETRY_SECONDS
    while True:
        try:
            model.save(str(folder))
            return
        except Exception as exc:
            if not is_disk_full(exc):
                raise
            shutil.rmtree(folder, ignore_errors=True)  # half-written: never mistaken for a saved model
            free = shutil.disk_usage(folder.parent).free
            if time.monotonic() >= deadline:
                raise DiskFull(
                    f"the disk filled up while saving the trained model '{key}' to {folder}, and no room was freed "
                    f"within {SAVE_RETRY_SECONDS:.0f} s (it needs about {need / 2**20:,.0f} MiB; {free / 2**20:,.0f} "
                    "MiB are free). The model was trained but could not be kept; free some space and run again "
                    "(with [train] checkpoint_steps > 0 a resume continues from the last checkpoint)."
                ) from None
            logger.error("the disk filled up while saving the trained model '%s' to %s: it needs about %s MiB and %s "
                         "MiB are free on that disk. The trained weights are kept in memory: free some space there; "
                         "the save is retried every %.0f s until %.0f s have passed.", key, folder,
                         f"{need / 2**20:,.0f}", f"{free / 2**20:,.0f}", SAVE_POLL_SECONDS, SAVE_RETRY_SECONDS)
            time.sleep(min(SAVE_POLL_SECONDS, max(0.0, deadline - time.monotonic())))


def describe(ctx: RunContext, run_model: RunModel) -> str:
    """The stage line of one training."""
    recipe, t = ctx.recipe, run_model.trained_with
    warm = warm_start_spec(ctx, t)
    spec = objective_spec(ctx, t)
    if run_model.key == MRL and spec is not None:  # MRL always trains with an objective
        after = f" after the '{warm.name}' warm start" if warm else ""
        return f"training with {recipe.loss.name} in the '{spec.name}' objective over dims {ctx.dims}{after}"
    what = f"with the '{spec.name}' objective" if spec else f"with {recipe.loss.name} alone (no MatryoshkaLoss)"
    what += f", seed {t.seed}" if t.seed is not None else ""
    what += f" and the '{warm.name}' warm start" if warm else ""
    return f"training '{run_model.key}' ({run_model.label}) {what}"


def train_models(ctx: RunContext) -> dict[str, TrainingFacts]:
    """Train every trained model of the run, in order; the models stay loaded in ``ctx.loaded``."""
    facts = {}
    for run_model in ctx.recipe.models.trained():
        with ctx.stage(f"train:{run_model.key}", describe(ctx, run_model)):
            ctx.loaded[run_model.key], facts[run_model.key] = train_or_reuse(ctx, run_model)
    return facts
