"""The run's own models: one key and one label each, known when the recipe is validated.

=============  =====================================================================  ===========
key            what                                                                   label
=============  =====================================================================  ===========
``base``       the model named in ``[model]``, as it is                               base
``mrl``        trained with MatryoshkaLoss (after the warm start, if any); saved in   MRL (+ warm
               ``model/``                                                             start)
``mrl-plain``  only with a warm start: the same training without it                  MRL
variant keys   every model a comparison declares, e.g. ``no-mrl``                     its label
=============  =====================================================================  ===========

Results, tables, plots, the model card and comparisons use these keys and labels, and nothing
else. A comparison that reads a model names it by key; any other name must be a local model
folder or a Hub id (``org/name``), so a misspelt or missing run model (``no-mrl`` without the
``no-mrl`` comparison) is a validation error listing the models the run will have. This module
sits beside ``recipe.py`` rather than in ``run/``: validation builds the namespace before any
run exists, and must not import what a run imports.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..components import Variant
from ..evidence.results import BASE, MRL, MRL_PLAIN
from ..models import ResolvedModel, embedding_dim_from_files, resolve_model

KEY_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
#: Names earlier versions (or habit) used for the fine-tuned model.
OLD_NAMES = {"tuned": MRL, "fine-tuned": MRL, "MRL": MRL, "finetuned": MRL}


@dataclass(frozen=True)
class Training:
    """How a trained model of the run is trained: with the recipe's objective (``"recipe"``), the
    base loss alone (``"none"``) or a named objective; with the warm start or not; and with the
    recipe's seed, or another one (``[train] seeds``)."""

    objective: str = "recipe"
    warm_start: bool | str = False
    """``True``: the recipe's warm start (if it has one); a name: that warm start, default parameters."""
    seed: int | None = None

    @property
    def matryoshka(self) -> bool:
        return self.objective != "none"


@dataclass(frozen=True)
class RunModel:
    """One model of the run."""

    key: str
    label: str
    training: Training | None
    """``None`` for the base model, which is not trained."""
    declared_by: str
    role: str = "variant"
    """``base``, ``mrl``, ``plain`` (MRL without the warm start), ``seed`` (MRL again with another
    seed) or ``variant`` (declared by a comparison)."""

    @property
    def trained_with(self) -> Training:
        """How the model is trained: every model of the run but the base model is."""
        if self.training is None:
            raise ValueError(f"'{self.key}' is the base model of the run; it is not trained")
        return self.training


@dataclass(frozen=True)
class RunModels:
    """The run's models, in the order tables show them."""

    by_key: dict[str, RunModel]

    def __contains__(self, key: object) -> bool:
        return key in self.by_key

    def __iter__(self) -> Iterator[RunModel]:
        return iter(self.by_key.values())

    def __getitem__(self, key: str) -> RunModel:
        return self.by_key[key]

    def keys(self) -> list[str]:
        return list(self.by_key)

    def labels(self) -> dict[str, str]:
        return {m.key: m.label for m in self}

    def trained(self) -> list[RunModel]:
        """The models the training stage produces: ``mrl`` first, then the others."""
        return sorted((m for m in self if m.training), key=lambda m: m.key != MRL)

    def with_role(self, *roles: str) -> list[RunModel]:
        return [m for m in self if m.role in roles]

    def describe(self) -> str:
        return ", ".join(m.key if m.label == m.key else f"{m.key} ({m.label})" for m in self)


def plan_models(
    warm_start_label: str | None, variants: list[tuple[str, Variant]], *, objective_label: str = "MRL",
    seeds: list[int] | None = None,
) -> tuple[RunModels, list[str]]:
    """The run's models for a recipe's warm start, objective and training seeds, and the variants
    its comparisons declare (``(where, variant)`` pairs); returns the problems found too."""
    models = {BASE: RunModel(BASE, "base", None, "recipe", role="base")}
    if warm_start_label:
        models[MRL_PLAIN] = RunModel(MRL_PLAIN, objective_label, Training(), "[warm_start]", role="plain")
    label = f"{objective_label} + {warm_start_label}" if warm_start_label else objective_label
    first, *others = [*seeds] if seeds else [None]
    models[MRL] = RunModel(MRL, label, Training(warm_start=True, seed=first), "recipe", role="mrl")
    for seed in others:
        key = f"{MRL}-seed{seed}"
        models[key] = RunModel(key, f"{label} (seed {seed})", Training(warm_start=True, seed=seed), "[train] seeds",
                               role="seed")
    problems = []
    for where, v in variants:
        if not KEY_PATTERN.match(v.key):
            problems.append(f"{where}: declares a model with the key {v.key!r}; keys are lower-case letters, "
                            "digits, '-' and '_' (the plugin must change it).")
        elif v.key in models:
            other = models[v.key]
            same = other.training == Training(v.resolved_objective, v.warm_start) and other.role == "variant"
            if not same:
                problems.append(f"{where}: declares the model '{v.key}', which {other.declared_by} already "
                                f"declares differently; the run's models are: {', '.join(models)}.")
            continue
        models[v.key] = RunModel(v.key, v.label or v.key, Training(v.resolved_objective, v.warm_start), where)
    return RunModels(models), problems


@dataclass(frozen=True)
class ModelRef:
    """What a model name in a comparison resolves to: a model of the run, or another model."""

    name: str
    run_key: str | None = None
    external: ResolvedModel | None = None


def resolve_ref(name: str, models: RunModels, base_dir: Path) -> ModelRef | str:
    """A :class:`ModelRef`, or a one-sentence problem naming the run's models and the fix."""
    if name in models:
        return ModelRef(name, run_key=name)
    resolved = resolve_model(name, base_dir)
    if resolved.origin == "local path":
        if embedding_dim_from_files(resolved.location) is None:
            return (f"model '{name}' is a folder ({resolved.location}) but not a sentence-transformers model "
                    "(no modules.json with a readable width)")
        return ModelRef(name, external=resolved)
    if resolved.is_local or HUB_ID.match(name):
        return ModelRef(name, external=resolved)
    if name in OLD_NAMES:
        hint = f" The fine-tuned model is called '{OLD_NAMES[name]}'."
    elif name == "no-mrl":
        hint = " Add a [[compare]] table with name = \"no-mrl\" to train it."
    elif name == MRL_PLAIN:
        hint = " It exists only when the recipe has a [warm_start]."
    else:
        close = difflib.get_close_matches(name, models.keys(), n=1, cutoff=0.6)
        hint = f" Did you mean '{close[0]}'?" if close else ""
    return (f"model '{name}' is not a model of this run, a local model folder or a Hub id ('org/name'). "
            f"This run will have: {models.describe()}.{hint}")
