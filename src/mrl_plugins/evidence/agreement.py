"""Did the choices hold? Every choice a run made on its validation split, measured on the held-out
queries beside the best option the run had there, with a paired test.

A choice *holds* unless it is significantly worse held out: a width or a serving setting that
keeps significantly less than the share it was chosen for, a published column or an adaptor
decision significantly behind the alternative it passed over. The run computes these once, from
its held-out per-query scores (:func:`choice_checks`), and records them in results.json
(``checks``); the report, the card and the CLI print them.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .decisions import (
    adaptor_gates,
    best_column,
    cheapest,
    held_out,
    recommended_widths,
    serving_decision,
)
from .results import KEEP_SHARES, MRL, ChoiceCheck, RunResults, share_label
from .stats import ALPHA, paired_p_value

Scores = Mapping[str, Mapping[int, np.ndarray]]
"""Column key → width → each held-out query's :data:`~.results.PRIMARY` score."""


def _test(mine: np.ndarray, theirs: np.ndarray, seed: int) -> tuple[float, float]:
    return round(float(np.mean(mine) - np.mean(theirs)), 6), round(paired_p_value(mine, theirs, seed=seed), 6)


def _check(choice: str, chosen: str, held: float, alternative: str | None, alternative_held: float | None,
           test: tuple[float, float] | None) -> ChoiceCheck:
    delta, p = test if test is not None else (None, None)
    holds = not (delta is not None and p is not None and delta < 0 and p < ALPHA)
    return ChoiceCheck(choice=choice, chosen=chosen, held_out=round(held, 6), alternative=alternative,
                       alternative_held_out=None if alternative_held is None else round(alternative_held, 6),
                       delta=delta, p=p, holds=holds)


def choice_checks(results: RunResults, scores: Scores, *, seed: int = 0) -> list[ChoiceCheck]:
    """Each choice (the recommended widths, what to serve, the model to publish per width, where
    the adaptor is used) with its held-out score, the best held-out alternative and a paired test
    over the held-out queries (``scores``)."""
    checks: list[ChoiceCheck] = []
    full = results.full_dim
    if MRL in results.models and MRL in scores:
        label = results.models[MRL].label
        for share, d in sorted(recommended_widths(results).items(), reverse=True):
            answer = results.smallest_dim_keeping(MRL, share) or full  # held out
            test = _test(scores[MRL][d], share * scores[MRL][full], seed) if d != full else None
            checks.append(_check(f"width ≥ {share_label(share)} ({label})", f"{d} dims",
                                 results.retention(MRL, d) or 0.0, f"{answer} dims" if answer != d else None,
                                 results.retention(MRL, answer) if answer != d else None, test))
    decision = serving_decision(results)
    if decision is not None:
        point, share = decision.point, decision.share
        if point.column in scores and point.model in scores:
            best = cheapest(results, share, "memory")
            twin = held_out(results, best) if best is not None else None
            test = _test(scores[point.column][point.dim], share * scores[point.model][full], seed)
            alternative = twin if twin is not None and (twin.column, twin.dim) != (point.column, point.dim) else None
            checks.append(_check(f"to serve (≥ {share_label(share)} of exact)", f"{point.label} at {point.dim} dims",
                                 point.kept, f"{alternative.label} at {alternative.dim} dims" if alternative else None,
                                 alternative.kept if alternative else None, test))
    publishable = [k for k, c in results.quality_columns().items() if (c.kind == "model" or c.saved_model)
                   and k in scores]
    for d in results.dims:
        chosen = best_column(results, d)
        others = [k for k in publishable if k != chosen]
        if chosen not in scores or not others:
            continue
        rival = max(others, key=lambda k: results.value(k, d))
        checks.append(_check(f"publish at {d}", results.models[chosen].label, results.value(chosen, d),
                             results.models[rival].label, results.value(rival, d),
                             _test(scores[chosen][d], scores[rival][d], seed)))
    for gate in adaptor_gates(results):
        if gate.column not in scores or gate.model not in scores:
            continue
        for d in results.dims:
            use, skip = (gate.column, gate.model) if d in gate.helps else (gate.model, gate.column)
            checks.append(_check(f"{results.models[gate.column].label} at {d}", results.models[use].label,
                                 results.value(use, d), results.models[skip].label, results.value(skip, d),
                                 _test(scores[use][d], scores[skip][d], seed)))
    return checks


__all__ = ["KEEP_SHARES", "Scores", "choice_checks"]
