"""Which column to use at a width: the adaptor's gate per width, the model to publish, and the
alternatives a recommendation must beat."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..results import MRL, RunResults
from ..stats import ALPHA
from .margins import Margin, basis, margin


@dataclass(frozen=True)
class Gate:
    """Where an adaptor column beats the model it adapts, on validation (where it is used) and,
    for the record, on the held-out evaluation set."""

    column: str
    model: str
    helps: list[int]
    """The widths at which validation says: use the adapted embedding (it is ahead there)."""
    hurts: list[int]
    validation_delta: dict[int, float]
    held_out_delta: dict[int, float]
    noise: list[int] = field(default_factory=list)
    """Widths (among ``helps``) where its lead on validation is within noise: used there all the
    same (it costs no more to serve), and the report says so."""
    cross_validated: str | None = None
    """How the gate was chosen when not on the validation split: ``"5-fold cross-validation over
    1,997 training queries"`` (the adaptor's ``cv_folds``); ``validation_delta`` and ``noise`` are
    then the cross-validated differences and their paired tests."""


def adaptor_gates(results: RunResults) -> list[Gate]:
    """For each adaptor column: the widths where it beats its model on validation (its
    :data:`PRIMARY` score; the leads within noise named), or by the cross-validation it recorded
    (``facts["cv"]``, the adaptor's ``cv_folds``), and the same differences held out."""
    on, gates = basis(results), []
    for key, column in results.models.items():
        model = column.reads[0] if column.reads else None
        cv = column.facts.get("cv") if column.component == "adaptor" else None
        if column.component != "adaptor" or model not in results.models or (key not in on.models and not cv):
            continue
        held = {d: results.value(key, d) - results.value(model, d) for d in results.dims}
        how = None
        if cv and all(str(d) in cv.get("delta", {}) and str(d) in cv.get("p", {}) for d in results.dims):
            val = {d: float(cv["delta"][str(d)]) for d in results.dims}
            helps = [d for d in results.dims if val[d] > 0]
            noise = [d for d in helps if float(cv["p"][str(d)]) >= ALPHA]
            how = f"{cv['folds']}-fold cross-validation over {cv['queries']:,} training queries"
        elif key in on.models:
            val = {d: on.value(key, d) - on.value(model, d) for d in results.dims}
            margins = {d: margin(results, key, d, against=model) for d in results.dims}
            helps = [d for d in results.dims if val[d] > 0]
            noise = [d for d in helps if (m := margins[d]) is not None and not m.beyond_noise]
        else:
            continue
        gates.append(Gate(key, model, helps, [d for d in results.dims if d not in helps], val, held, noise, how))
    return gates


@dataclass(frozen=True)
class ColumnChoice:
    """The model to publish at one width: the best on validation by its mean."""

    column: str
    by_mean: str
    """The same column (kept for readers of 0.9's first form, where a margin could overrule it)."""
    noise: Margin | None = None
    """When ``column`` is not the run's model: its lead over it, when within noise."""


def column_choice(results: RunResults, dim: int) -> ColumnChoice:
    """The quality column with the best :data:`PRIMARY` score at ``dim`` on validation, among
    those that are a model one can publish (the run's models, and comparisons that saved one); a
    lead over the run's own model (MRL) within noise is recorded, not overruled: publishing one
    model or another costs the same."""
    on = basis(results)
    candidates = [k for k, c in results.quality_columns().items() if k in on.models
                  and (c.kind == "model" or c.saved_model)]
    best = max(candidates, key=lambda k: on.value(k, dim))
    if best != MRL and MRL in candidates:
        found = margin(results, best, dim, against=MRL)
        if found is not None and not found.beyond_noise:
            return ColumnChoice(best, best, found)
    return ColumnChoice(best, best)


def best_column(results: RunResults, dim: int) -> str:
    """The model to publish at ``dim`` (:func:`column_choice`)."""
    return column_choice(results, dim).column


def plain_mrl(results: RunResults) -> str:
    """The run's plain MRL model: ``mrl-plain`` when the recipe warm-starts ``mrl``, else ``mrl``."""
    return "mrl-plain" if "mrl-plain" in results.models else MRL


def strongest_alternative(results: RunResults, dim: int, column: str) -> str | None:
    """The best post-hoc comparison column at ``dim`` on validation (PCA, an adaptor, a plugin's),
    other than ``column``: what a recommendation must beat besides plain MRL."""
    on = basis(results)
    others = [k for k, c in results.quality_columns().items() if c.kind == "comparison" and k != column
              and k in on.models]
    return max(others, key=lambda k: on.value(k, dim), default=None)
