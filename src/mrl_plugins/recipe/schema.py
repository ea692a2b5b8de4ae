"""The recipe's own tables as pydantic models that forbid unknown keys, reading TOML, ``--set``
overrides, and the wording of every schema problem (the file, the table, the key, a suggestion).
:mod:`mrl_plugins.recipe` builds on these to validate components and cross-check them.
"""

from __future__ import annotations

import difflib
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..components import KINDS
from ..errors import RecipeError, UserError


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelSection(Section):
    name: str = Field(description="Hub id or local path of the base model.")
    max_seq_length: int | None = Field(None, gt=0, description="Truncate inputs to this many tokens.")
    device: str = Field("auto", description='"auto" (CUDA, else MPS, else CPU), or a torch device string.')
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field("auto", description="Training precision.")


class TrainSection(Section):
    epochs: float = Field(1.0, gt=0)
    batch_size: int = Field(32, ge=2, description="Per device; in-batch negatives grow with it.")
    learning_rate: float = Field(2e-5, gt=0)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    weight_decay: float = Field(0.01, ge=0)
    max_steps: int | None = Field(None, gt=0, description="Stop after this many steps (overrides epochs).")
    logging_steps: int = Field(10, gt=0)
    checkpoint_steps: int = Field(500, ge=0, description="Save a resumable checkpoint every N steps; 0: never.")
    seeds: list[int] | None = Field(
        None, description="Train MRL once per seed (the first is the saved model); reports give the mean ± sd across "
                          "them."
    )


class EvalSection(Section):
    k: int = Field(10, gt=0, description="Cut-off of MRR@k, Recall@k and nDCG@k.")
    batch_size: int = Field(64, gt=0)
    corpus_chunk_size: int = Field(50_000, gt=0, description="Corpus rows scored at once.")


class ValidationSection(Section):
    """The split every choice of the run is made on (mrl_plugins.validation)."""

    queries: int = Field(200, ge=0, description="Validation queries; 0: no validation split, choices are made on the "
                                                "evaluation set (and the report says so).")
    corpus: int = Field(1000, ge=0, description="Validation corpus: the queries' documents, then distractors.")
    from_training: float = Field(0.2, ge=0, le=0.5, description="Largest share of the training rows the validation "
                                 "set may take when the source's spare rows are not enough.")
    positive_threshold: float = Field(0.5, description="Scored pairs: a score above this is relevant in validation.")
    eval_steps: int = Field(0, ge=0, description="Score each model being trained on the validation split every N "
                                                 "steps (the report's training curves; a sweep prunes on them); 0: "
                                                 "never during training.")
    patience: int = Field(0, ge=0, description="Stop training a model after this many validation scores (eval_steps "
                                               "apart) without a better mean MRR over the widths; 0: never.")


class MiningSection(Section):
    """Hard negatives mined for the training pairs before training (sentence-transformers'
    ``mine_hard_negatives``, among the training rows' own positives only)."""

    enabled: bool = Field(True, description="false: no mining, as if the table were absent (what a sweep switches: "
                          '"mining.enabled" = { choices = [true, false] }).')
    model: str = Field("base", description='The model that mines: "base" (the recipe\'s), or a folder or Hub id.')
    num_negatives: int = Field(1, ge=1, le=10, description="Negatives per pair (one triplet each).")
    range_min: int = Field(0, ge=0, description="Skip this many of the closest candidates.")
    range_max: int | None = Field(50, ge=1, description="Candidates considered per anchor.")
    relative_margin: float | None = Field(0.05, ge=0, description="Keep a negative only if its score is at least this "
                                          "share below the positive's (NV-Retriever's TopK-PercPos).")
    absolute_margin: float | None = Field(None, description="Or: at least this much below the positive's score.")
    sampling_strategy: Literal["top", "random"] = Field("top", description="The closest candidates, or random ones.")
    batch_size: int = Field(64, gt=0, description="Encoding batch size.")


class SweepParam(Section):
    """One dimension of a sweep's search space: ``choices``, or a range ``low``..``high`` (whole
    numbers when both are; ``log`` for a log-uniform one, ``step`` for a grid of it)."""

    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = Field(None, gt=0)
    choices: list[Any] | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _one_kind(self) -> SweepParam:
        if (self.choices is None) == (self.low is None or self.high is None):
            raise ValueError("give either choices = [...] or both low and high")
        if self.low is not None and self.high is not None and self.low > self.high:
            raise ValueError(f"low {self.low} is above high {self.high}")
        if self.log and self.low is not None and self.low <= 0:
            raise ValueError("a log-uniform range needs low > 0")
        return self

    @property
    def integer(self) -> bool:
        return isinstance(self.low, int) and isinstance(self.high, int) and not isinstance(self.low, bool)


class SweepSection(Section):
    """``mrl-run sweep``: hyperparameter search on the validation split (mrl_plugins.sweep)."""

    trials: int = Field(20, gt=0, description="Trials in the study (finished, pruned and failed ones count); "
                                              "--trials overrides it.")
    space: dict[str, SweepParam] = Field(description='Recipe key → its range, e.g. "train.learning_rate" = '
                                                     '{ low = 1e-5, high = 1e-4, log = true }.', min_length=1)
    metric: Literal["mrr", "recall", "ndcg"] = Field("mrr", description="The validation metric the study maximises.")
    dims: list[int] | None = Field(None, description="Widths whose validation metric is averaged (default: all).")
    weights: list[float] | None = Field(None, description="Weights of those widths (default: equal).")
    column: str = Field("mrl", description="The run's column the objective reads (e.g. adaptor(mrl)).")
    sampler: Literal["tpe", "grid", "random"] = Field("tpe", description='"grid" needs choices for every key.')
    pruner: Literal["median", "none"] = Field("median", description="Median pruning on the validation curve.")
    report_every: int = Field(0, ge=0, description="Training steps between the validation scores a trial reports "
                                                   "for pruning; 0: once per epoch.")
    output_dir: str = Field("runs/{name}-sweep", description="The sweep's folder (study, trials), relative to the "
                                                             "recipe's folder.")
    seed: int | None = Field(None, description="The sampler's seed (default: the recipe's).")
    baseline: bool = Field(True, description="Run the recipe as written (none of the space's values set) as the "
                                             "study's first trial, and keep it unless a trial beats it on validation "
                                             "beyond noise (paired test over the validation queries, p < 0.05; with "
                                             "metric = \"mrr\"). Not with sampler = \"grid\": put the recipe's "
                                             "values among its choices.")


def sample_value(param: SweepParam) -> Any:
    if param.choices is not None:
        return param.choices[0]
    return int(param.low) if param.integer and param.low is not None else param.low


def toml_value(value: Any) -> str:
    """A value as ``--set`` reads it (TOML syntax), on one line: arrays and tables inline, so that
    it fits a comment, a table cell and an Optuna choice (tomli_w writes arrays over several lines)."""
    import tomli_w

    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{tomli_w.dumps({k: 0}).split('=', 1)[0].strip()} = {toml_value(v)}"
                                for k, v in value.items()) + " }"
    return tomli_w.dumps({"v": value}).split("=", 1)[1].strip()


class PublishSection(Section):
    repo_id: str | None = Field(None, pattern=r"^[\w.-]+/[\w.-]+$", description="Hub repo, 'user/name'.")
    private: bool = Field(False, description="Create the Hub repo as private.")
    revision: str | None = Field(None, description="Branch to push to (created if missing); default main.")
    push: bool = Field(False, description="Push to the Hub after the run.")
    truncate_dim: int | Literal["recommended"] | None = Field(
        None, description='Default dimension of the saved model; "recommended" = smallest keeping ≥ 99% MRR.'
    )
    card_examples: bool = Field(
        True,
        description="Keep sentence-transformers' training examples (widget and 'Samples' tables) in the model "
        "card; false keeps training text out of a published card.",
    )


class ServingSection(Section):
    """Where the model will be searched, for the advice on how to serve it (issue #37)."""

    corpus_size: int | None = Field(
        None, gt=0, description="Documents the index will hold: the report states the shortlist each funnel setting "
                                "needs at this size, extrapolated from the corpus sizes the funnel measured (marked "
                                "as such); unset, it states them at the sizes measured only.")


class RecipeModel(Section):
    name: str = Field("run", description="Name of the run, used in output_dir and reports.")
    seed: int = Field(42, description="Seeds Python, NumPy and torch.")
    output_dir: str = Field("runs/{name}-{timestamp}", description="Where the run writes, relative to the recipe's "
                                                                   "folder like every path in a recipe (before 0.7: "
                                                                   "to the current directory).")
    plugins: list[str] = Field(default_factory=list, description="Recipe-local plugin modules (.py paths).")
    model: ModelSection
    data: dict[str, Any]
    loss: dict[str, Any]
    dims: dict[str, Any]
    train: TrainSection = Field(default_factory=TrainSection)
    eval: EvalSection = Field(default_factory=EvalSection)
    validation: ValidationSection = Field(default_factory=ValidationSection)
    compare: list[dict[str, Any]] = Field(default_factory=list)
    task: list[dict[str, Any]] = Field(default_factory=list, description="[[task]] tables: evaluations beyond "
                                       "retrieval (similarity, classification, clustering, a plugin's), each scored "
                                       "for every model of the run at every width.")
    warm_start: dict[str, Any] | None = None
    objective: dict[str, Any] | None = None
    publish: PublishSection = Field(default_factory=PublishSection)
    serving: ServingSection = Field(default_factory=ServingSection)
    mining: MiningSection | None = None
    sweep: SweepSection | None = None

    @model_validator(mode="after")
    def _mining_off(self) -> RecipeModel:
        if self.mining is not None and not self.mining.enabled:
            self.mining = None  # the rest of the run knows one way to be without mining
        return self


SECTION_MODELS: dict[str, type[BaseModel]] = {
    "model": ModelSection,
    "train": TrainSection,
    "eval": EvalSection,
    "validation": ValidationSection,
    "publish": PublishSection,
    "serving": ServingSection,
    "mining": MiningSection,
    "sweep": SweepSection,
}



# -- overrides ----------------------------------------------------------------------------
def apply_override(raw: dict[str, Any], assignment: str) -> None:
    """Apply ``train.epochs=2`` (value in TOML syntax; bare words are strings) to ``raw``."""
    if "=" not in assignment:
        raise UserError(f"--set '{assignment}': expected KEY=VALUE, e.g. --set train.epochs=2.")
    key, value_text = (part.strip() for part in assignment.split("=", 1))
    try:
        value = tomllib.loads(f"v = {value_text}")["v"]
    except tomllib.TOMLDecodeError:
        value = value_text
    parts = key.split(".")
    node: Any = raw
    for i, part in enumerate(parts[:-1]):
        nxt = node[int(part)] if isinstance(node, list) and part.isdigit() and int(part) < len(node) else None
        if isinstance(node, dict):
            nxt = node.setdefault(part, {})
        if not isinstance(nxt, (dict, list)):
            raise UserError(f"--set '{assignment}': '{'.'.join(parts[: i + 1])}' is not a table.")
        node = nxt
    last = parts[-1]
    if isinstance(node, list):
        if not (last.isdigit() and int(last) < len(node)):
            raise UserError(f"--set '{assignment}': no item {last} in '{'.'.join(parts[:-1])}'.")
        node[int(last)] = value
    else:
        node[last] = value


# -- problem formatting ---------------------------------------------------------------------
def _where(loc: tuple[Any, ...]) -> str:
    if not loc:
        return "recipe"
    head, rest = loc[0], loc[1:]
    if head in ("compare", "task") and rest and isinstance(rest[0], int):
        prefix, rest = f"[[{head}]] #{rest[0] + 1}", rest[1:]
    elif head in KINDS or head in SECTION_MODELS:
        prefix = f"[{head}]"
    else:
        return ".".join(str(p) for p in loc)
    return f"{prefix} {'.'.join(str(p) for p in rest)}".strip()


def _fields_of(model: type[BaseModel] | None, loc: tuple[Any, ...]) -> list[str]:
    """Allowed keys of the table at ``loc`` (for 'unknown key' suggestions)."""
    if model is RecipeModel and loc and loc[0] in SECTION_MODELS:
        model, loc = SECTION_MODELS[loc[0]], loc[1:]
    return sorted(model.model_fields) if model is not None and not loc else []


def pydantic_problems(exc: ValidationError, model: type[BaseModel], prefix: tuple[Any, ...] = ()) -> list[str]:
    problems = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        where = _where(prefix + loc)
        if err["type"] == "extra_forbidden":
            allowed = _fields_of(model, loc[:-1])
            close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else "."
            problems.append(f"{where}: unknown key{hint} Allowed keys: {', '.join(allowed)}.")
        elif err["type"] == "missing" and len(prefix + loc) == 1 and loc[0] in KINDS:
            problems.append(f"{where}: required table is missing; add it with a 'name' key.")
        elif err["type"] == "missing":
            problems.append(f"{where}: required key is missing.")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(f"{where}: {msg} (got {err.get('input')!r}).")
    return problems


# -- loading ----------------------------------------------------------------------------------
def read_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: recipe file not found. Check the path, or copy one from recipes/.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read the recipe: {exc}.") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(str(path),
                          [f"TOML syntax error: {exc}. Fix the line named, then run "
                           f"'mrl-run validate {path}'."]) from None


