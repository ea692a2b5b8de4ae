"""TOML recipe → validated :class:`Recipe`, with every problem collected and located.

Parsing uses ``tomllib`` (syntax errors carry line and column); the recipe's own keys are
checked by pydantic models that forbid unknown keys; each component's keys are checked by that
component's ``Params``; then cross-checks (the loss's row format against the data source's,
dimensions against the model's width read from its files, every model a comparison reads
against the run's models). All problems are reported in one :class:`RecipeError`. Nothing here
imports torch or loads a model.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Generic, TypeVar, cast

from pydantic import BaseModel, ValidationError

from ..components import (
    Comparison,
    Component,
    Control,
    DataSource,
    DimSchedule,
    Loss,
    Objective,
    Params,
    Task,
    ValidationContext,
    WarmStart,
)
from ..data.split import MIN_QUERIES
from ..data.types import RowFormat
from ..errors import RecipeError, UserError
from ..evidence.results import column_key
from ..models import ResolvedModel, embedding_dim_from_files, resolve_model
from ..plugins import Registry, load_registry
from . import checks
from .checks import fill_output_dir, output_dir_problems
from .run_models import ModelRef, RunModels, plan_models, resolve_ref
from .schema import RecipeModel, apply_override, pydantic_problems, read_toml
from .sweep import sweep_problems

C = TypeVar("C", bound=Component[Any])


@dataclass
class ComponentSpec(Generic[C]):
    """A component named in a recipe, with its validated parameters; typed by its kind
    (``ComponentSpec[DataSource]``), so ``recipe.dims.component.dims(…)`` is checked."""

    kind: str
    name: str
    cls: type[C]
    params: BaseModel
    plugin: str
    where: str
    origin: dict[str, Any] = field(default_factory=dict)
    """The registry's :meth:`~mrl_plugins.plugins.Registry.provenance` of the component."""

    @cached_property
    def component(self) -> C:
        built = self.cls(self.params)
        built.provided_by = self.origin or {"plugin": self.plugin}
        return built

    def as_table(self) -> dict[str, Any]:
        return {"name": self.name, **self.params.model_dump(mode="json", exclude_none=True)}


@dataclass
class ComparisonSpec(ComponentSpec[Comparison[Any]]):
    """A ``[[compare]]`` table: its column's key and label, and the models it reads, resolved."""

    key: str = ""
    """The column's identity (``funnel(mrl, shortlist=100)``), from its name, reads and parameters."""
    label: str = ""
    """How tables name it: the recipe's ``label``, else the comparison's own; display only."""
    reads: list[ModelRef] = field(default_factory=list)
    custom_label: str | None = None

    def as_table(self) -> dict[str, Any]:
        return {**super().as_table(), **({"label": self.custom_label} if self.custom_label else {})}


def _available(ref: ModelRef | str) -> ModelRef | str:
    """An external model must be loadable now (weights present, or the Hub reachable)."""
    if isinstance(ref, str) or ref.external is None:
        return ref
    problems = checks.model_problems("model", ref.external)
    return problems[0].removeprefix("model: ") if problems else ref


class _Labels(dict):
    """Model key → label; a model that is not the run's is named as the recipe wrote it."""

    def __missing__(self, key: str) -> str:
        return key


@dataclass
class Recipe:
    """A validated recipe: settings, components, the run's models, the chosen row format and
    the base model's location."""

    path: Path
    settings: RecipeModel
    data: ComponentSpec[DataSource[Any]]
    loss: ComponentSpec[Loss[Any]]
    dims: ComponentSpec[DimSchedule[Any]]
    compare: list[ComparisonSpec]
    warm_start: ComponentSpec[WarmStart[Any]] | None
    objective: ComponentSpec[Objective[Any]]
    row_format: RowFormat
    model: ResolvedModel
    full_dim: int | None
    models: RunModels
    registry: Registry = field(repr=False)
    output_dir: Path = Path(".")
    overrides: tuple[str, ...] = ()
    """The ``--set`` assignments the recipe was loaded with (repeated in every resume hint)."""
    tasks: list[ComponentSpec[Task[Any]]] = field(default_factory=list)
    """The ``[[task]]`` tables: evaluations beyond retrieval, in the recipe's order."""

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def external_models(self) -> dict[str, ResolvedModel]:
        """Models that comparisons read and that are not the run's, by the name the recipe used."""
        return {ref.name: ref.external for c in self.compare for ref in c.reads if ref.external is not None}

    def resolved(self) -> dict[str, Any]:
        """The recipe with every default filled in, as saved next to each run's results."""
        s = self.settings
        out: dict[str, Any] = {
            "name": s.name,
            "seed": s.seed,
            "output_dir": str(self.output_dir.absolute()),  # the copy in a run folder: no base to be relative to
            "plugins": list(s.plugins),
            "model": s.model.model_dump(mode="json", exclude_none=True),
            "data": self.data.as_table(),
            "loss": self.loss.as_table(),
            "dims": self.dims.as_table(),
            "train": s.train.model_dump(mode="json", exclude_none=True),
            "eval": s.eval.model_dump(mode="json", exclude_none=True),
            "validation": s.validation.model_dump(mode="json"),
        }
        if self.compare:
            out["compare"] = [c.as_table() for c in self.compare]
        if self.tasks:
            out["task"] = [t.as_table() for t in self.tasks]
        if self.warm_start:
            out["warm_start"] = self.warm_start.as_table()
        out["objective"] = self.objective.as_table()
        publish = s.publish.model_dump(mode="json", exclude_none=True)
        out["publish"] = publish
        if s.mining is not None:
            out["mining"] = s.mining.model_dump(mode="json", exclude_none=True)
        if s.sweep is not None:
            out["sweep"] = s.sweep.model_dump(mode="json", exclude_none=True)
        return out


def _component(
    registry: Registry, kind: str, table: Any, where: str, problems: list[str], loc: tuple[Any, ...],
    spec_cls: type[ComponentSpec[Any]] = ComponentSpec, base_dir: Path = Path("."),
) -> ComponentSpec[Any] | None:
    if not isinstance(table, dict):
        problems.append(f"{where}: must be a table.")
        return None
    params = dict(table)
    name = params.pop("name", None)
    if not isinstance(name, str):
        names = ", ".join(registry.names(kind))
        problems.append(f"{where} name: required; one of: {names}.")
        return None
    try:
        cls = registry.get(kind, name)
    except UserError as exc:
        problems.append(f"{where} name: {exc}")
        return None
    try:
        validated = cls.Params.model_validate(params)
    except ValidationError as exc:
        problems.extend(pydantic_problems(exc, cls.Params, loc))
        return None
    validated = cast("Params", resolve_model_params(validated, where, base_dir, problems))
    return spec_cls(kind, name, cls, validated, registry.owner(kind, name), where,
                    origin=registry.provenance(kind, name))


def resolve_model_params(params: BaseModel, where: str, base_dir: Path, problems: list[str]) -> BaseModel:
    """Every parameter a component declares as a model name (:func:`mrl_plugins.components.model_field`:
    the ``gist`` loss's ``guide`` …) resolved as ``[model]`` is, against the recipe's folder, and
    checked now (its weights, or the Hub); the component then receives the resolved location."""
    updates = {}
    for name, info in type(params).model_fields.items():
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        value, besides = getattr(params, name), extra.get("besides")
        if not extra.get("model_name") or not isinstance(value, str) or (
                isinstance(besides, list) and value in besides):
            continue
        resolved = resolve_model(value, base_dir)
        if resolved.origin == "local path" and embedding_dim_from_files(resolved.location) is None:
            problems.append(f"{where} {name}: '{value}' is a folder ({resolved.location}) but not a "
                            "sentence-transformers model (no modules.json).")
            continue
        found = checks.model_problems(f"{where} {name}", resolved)
        problems.extend(found)
        if not found and resolved.is_local:
            updates[name] = resolved.location
    return params.model_copy(update=updates) if updates else params


def plan_comparisons(
    compare: list[ComparisonSpec], warm_start: ComponentSpec[Any] | None, objective: ComponentSpec[Any] | None,
    seeds: list[int] | None, base_dir: Path, problems: list[str], registry: Registry,
) -> RunModels:
    """The run's models, and for each comparison the models it reads, its label and its key."""
    declared = [(c.where, v) for c in compare for v in c.component.variants()]
    for where, v in declared:
        if v.resolved_objective not in ("recipe", "none") and v.resolved_objective not in registry.names("objective"):
            problems.append(f"{where}: declares a model trained with the objective '{v.resolved_objective}', which no "
                            f"plugin registers (known: {', '.join(registry.names('objective'))}).")
    if seeds is not None and (not seeds or len(set(seeds)) != len(seeds)):
        problems.append(f"[train] seeds: must list distinct seeds, got {seeds}.")
        seeds = None
    models, found = plan_models(warm_start.component.label() if warm_start else None, declared,
                                objective_label=objective.component.label() if objective else "MRL", seeds=seeds)
    problems.extend(found)
    labels = _Labels(models.labels())
    keys: dict[str, str] = {}
    shown: dict[str, str] = {label: f"the model '{key}'" for key, label in models.labels().items()}
    for spec in compare:
        resolved = [_available(resolve_ref(name, models, base_dir)) for name in spec.component.reads()]
        bad = [r for r in resolved if isinstance(r, str)]
        where = f"{spec.where} model" if "model" in spec.cls.Params.model_fields else spec.where
        problems.extend(f"{where}: {r}" for r in bad)
        if bad:
            continue
        refs = [r for r in resolved if not isinstance(r, str)]
        spec.reads = refs
        if spec.custom_label and isinstance(spec.component, Control):
            problems.append(f"{spec.where} label: '{spec.name}' adds the run's model '{spec.component.variant().key}', "
                            "whose name every table shares; remove the label.")
        spec.label = spec.custom_label or spec.component.label(labels)
        spec.key = (spec.component.variant().key if isinstance(spec.component, Control)
                    else column_key(spec.name, [r.name for r in refs], spec.component.identity()))
        if spec.key in keys:
            problems.append(f"{spec.where}: measures the same thing as {keys[spec.key]} ({spec.key}); "
                            "remove one of them or change its parameters.")
        elif spec.key not in models.labels() and spec.label in shown:
            problems.append(f"{spec.where}: would be shown as '{spec.label}' like {shown[spec.label]}, though it "
                            f"measures something else ({spec.key}); give one of them a label = \"…\".")
        keys.setdefault(spec.key, spec.where)
        shown.setdefault(spec.label, spec.where)
    return models


def load_recipe(
    path: str | Path,
    overrides: tuple[str, ...] | list[str] = (),
    *,
    registry: Registry | None = None,
    check_sweep: bool = True,
) -> Recipe:
    """Parse, override, validate; raise one RecipeError listing every problem found (``check_sweep``:
    also the ``[sweep]`` table, each of whose keys loads the recipe again without it)."""
    path = Path(path)
    raw = read_toml(path)
    for assignment in overrides:
        apply_override(raw, assignment)
    problems: list[str] = []
    try:
        settings = RecipeModel.model_validate(raw)
    except ValidationError as exc:
        problems.extend(pydantic_problems(exc, RecipeModel))
        settings = None

    base_dir = path.parent
    if registry is None:
        modules = raw.get("plugins", []) if isinstance(raw.get("plugins", []), list) else []
        modules = [m for m in modules if isinstance(m, str)]
        registry = load_registry(modules=tuple(modules), base_dir=base_dir)
        for spec in dict.fromkeys(modules):
            if registry.plugins[spec].error:
                problems.append(f"plugins: '{spec}' is broken: {registry.plugins[spec].error}")

    specs: dict[str, ComponentSpec[Any] | None] = {}
    for kind in ("data", "loss", "dims", "warm_start", "objective"):
        if kind in raw:
            specs[kind] = _component(registry, kind, raw[kind], f"[{kind}]", problems, (kind,), base_dir=base_dir)
    if "objective" not in raw:  # the default: MatryoshkaLoss, as every run before objectives were plugins
        specs["objective"] = _component(registry, "objective", {"name": "matryoshka"}, "[objective]", problems,
                                        ("objective",))
    compare: list[ComparisonSpec] = []
    compare_raw = raw.get("compare", [])
    for i, table in enumerate(compare_raw if isinstance(compare_raw, list) else []):
        label = table.pop("label", None) if isinstance(table, dict) else None
        if label is not None and (not isinstance(label, str) or not label.strip()):
            problems.append(f"[[compare]] #{i + 1} label: must be a non-empty string (how tables name the column), "
                            f"got {label!r}.")
            label = None
        spec = _component(registry, "compare", table, f"[[compare]] #{i + 1}", problems, ("compare", i), ComparisonSpec,
                          base_dir)
        if spec is not None:
            assert isinstance(spec, ComparisonSpec)
            spec.custom_label = label.strip() if label else None
            compare.append(spec)
    tasks: list[ComponentSpec[Task[Any]]] = []
    task_raw = raw.get("task", [])
    for i, table in enumerate(task_raw if isinstance(task_raw, list) else []):
        task = _component(registry, "task", table, f"[[task]] #{i + 1}", problems, ("task", i), base_dir=base_dir)
        if task is not None:
            tasks.append(task)
    seeds = settings.train.seeds if settings is not None else None
    models = plan_comparisons(compare, specs.get("warm_start"), specs.get("objective"), seeds, base_dir, problems,
                              registry)

    model: ResolvedModel | None = None
    full_dim: int | None = None
    model_name = (raw.get("model") or {}).get("name") if isinstance(raw.get("model"), dict) else None
    if isinstance(model_name, str):
        model = resolve_model(model_name, base_dir)
        full_dim = embedding_dim_from_files(model.location) if model.is_local else None
        if model.origin == "local path" and full_dim is None:
            problems.append(f"[model] name: '{model_name}' is a folder but not a sentence-transformers model (no "
                            "modules.json).")

    k = settings.eval.k if settings is not None else 10
    model_dir = Path(model.location) if model is not None and model.is_local else None
    ctx = ValidationContext(recipe_dir=base_dir, full_dim=full_dim, k=k, registry=registry, model_dir=model_dir)
    for spec in [*(s for s in specs.values() if s), *compare, *variant_specs(compare, registry), *tasks]:
        problems.extend(f"{spec.where} {p}" for p in guarded_check(spec, ctx))

    row_format: RowFormat | None = None
    data = cast("ComponentSpec[DataSource[Any]] | None", specs.get("data"))
    loss = cast("ComponentSpec[Loss[Any]] | None", specs.get("loss"))
    if data and loss:
        produced = data.component.formats()
        row_format = next((RowFormat(f) for f in loss.cls.accepts if f in produced), None)
        if row_format is None:
            fitting = [n for n in registry.names("loss") if set(registry.get("loss", n).accepts) & set(produced)]
            problems.append(
                f"[loss] name: '{loss.name}' trains on {' or '.join(loss.cls.accepts)} rows, but data source "
                f"'{data.name}' produces {', '.join(produced)}. Use a loss that accepts them "
                f"({', '.join(fitting) or 'none installed'}) or a data source that produces "
                f"{' or '.join(loss.cls.accepts)}."
            )
        if settings is not None and settings.mining is not None and row_format is not None:
            if RowFormat.TRIPLETS not in [RowFormat(f) for f in loss.cls.accepts]:
                problems.append(f"[mining]: mined negatives make triplets, and [loss] '{loss.name}' does not train on "
                                "triplets; use mnr, cached-mnr or gist, or remove [mining].")
            elif row_format != RowFormat.PAIRS:
                problems.append(f"[mining]: data source '{data.name}' gives {row_format} rows; mining adds negatives "
                                "to pairs. Remove [mining] (the rows have their negatives), or give pairs.")

    if settings is not None:
        problems.extend(checks.publish_problems(settings.publish, full_dim))
        v = settings.validation
        if v.patience and not v.eval_steps:
            problems.append(f"[validation] patience: {v.patience} needs validation scores during training; set "
                            "[validation] eval_steps too (e.g. eval_steps = 50).")
        if (v.patience or v.eval_steps) and not v.queries:
            problems.append("[validation] eval_steps and patience score on the validation split, and queries = 0 "
                            "turns it off; remove one or the other.")
        problems.extend(checks.machine_problems(settings, model, models, base_dir))
        if 0 < v.queries < MIN_QUERIES:
            problems.append(f"[validation] queries: {v.queries} validation queries cannot tell widths apart; a run "
                            f"needs at least {MIN_QUERIES} to choose anything (the default is 200), or queries = 0 to "
                            "make every choice on the evaluation set.")

    output_dir = None
    if settings is not None:
        found = output_dir_problems(settings.name, settings.output_dir)
        problems.extend(found)
        if not found:
            output_dir = output_path(base_dir, fill_output_dir(settings.output_dir, settings.name,
                                                               time.strftime("%Y%m%d-%H%M%S")))

    if settings is not None and settings.sweep is not None and check_sweep and not problems:
        schedule = specs.get("dims")
        full_widths = schedule.component.dims(full_dim) if full_dim and schedule is not None else None
        problems.extend(sweep_problems(path, tuple(overrides), settings, models, compare, full_widths, registry,
                                       load=load_recipe))
    if problems or settings is None:
        raise RecipeError(str(path), problems)
    # no problems: every required component, the row format, the model and the output folder were found
    assert data is not None and loss is not None and row_format is not None and model is not None
    assert output_dir is not None and specs.get("dims") is not None and specs.get("objective") is not None
    return Recipe(
        path=path,
        settings=settings,
        data=data,
        loss=loss,
        dims=cast(ComponentSpec[DimSchedule[Any]], specs["dims"]),
        compare=compare,
        warm_start=cast("ComponentSpec[WarmStart[Any]] | None", specs.get("warm_start")),
        objective=cast(ComponentSpec[Objective[Any]], specs["objective"]),
        row_format=row_format,
        model=model,
        full_dim=full_dim,
        models=models,
        registry=registry,
        output_dir=output_dir,
        overrides=tuple(overrides),
        tasks=tasks,
    )


def output_path(recipe_dir: Path, filled: str) -> Path:
    """Where a recipe's ``output_dir`` points: relative to the recipe's folder, like every path in
    a recipe (mrl-plugins 0.6 and older: relative to the working directory); an absolute one as
    it is. Normalised (``recipes/../runs/x`` is ``runs/x``), so messages name it plainly."""
    return Path(os.path.normpath(recipe_dir / filled))


def variant_specs(compare: list[ComparisonSpec], registry: Registry) -> list[ComponentSpec[Any]]:
    """The named objectives and warm starts that comparisons' variants train with (default
    parameters), so that their checks run at validate like the recipe's own."""
    out: list[ComponentSpec[Any]] = []
    for c in compare:
        for v in c.component.variants():
            for kind, name in (("objective", v.resolved_objective), ("warm_start", v.warm_start)):
                if isinstance(name, str) and name not in ("recipe", "none") and name in registry.names(kind):
                    cls = registry.get(kind, name)
                    where = f"{c.where} (variant '{v.key}', {kind} '{name}')"
                    out.append(ComponentSpec(kind, name, cls, cls.Params(), registry.owner(kind, name), where,
                                             origin=registry.provenance(kind, name)))
    return out


def guarded_check(spec: ComponentSpec[Any], ctx: ValidationContext) -> list[str]:
    """A recipe component's own ``check()``, guarded (:func:`mrl_plugins.component_errors.guarded_check`)."""
    from ..component_errors import guarded_check as checked

    return checked(spec.component, ctx, spec.name)

