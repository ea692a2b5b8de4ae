"""The recipe's data: loaded through its data source, checked against the contract (its columns,
no leaks, a usable evaluation set), with its validation split; and the lines that say what it
holds. The run loads it so, and ``mrl-run validate --data`` does the same without training."""

from __future__ import annotations

import logging
from dataclasses import replace

from ..component_errors import PluginFailed, plugin_call
from ..data.split import find_leaks
from ..data.types import DataBundle, DataRequest, IRSetError
from ..errors import PluginError, UserError
from .load import Recipe

logger = logging.getLogger("mrl_plugins")


def data_lines(recipe: Recipe, bundle: DataBundle, validation_from: dict[str, int]) -> list[tuple[int, str]]:
    """What the data holds, as (log level, line): what the run logs when it loads it and
    ``mrl-run validate --data`` prints."""
    lines = [(logging.INFO, f"          {len(bundle.train)} training rows ({bundle.row_format}), "
                            f"{len(bundle.eval.queries)} evaluation queries, {len(bundle.eval.corpus)} documents")]
    if bundle.validation is not None:
        lines.append((logging.INFO, f"          {len(bundle.validation.queries)} validation queries, "
                                    f"{len(bundle.validation.corpus)} documents ({validation_words(validation_from)}): "
                                    "every choice of the run is made on them, and no part of it is fitted on them"))
    else:
        lines.append((logging.WARNING, "no validation split ([validation] queries = 0): the run's choices are made on "
                                       "the evaluation set, and flatter themselves by its luck"))
    k = recipe.settings.eval.k
    if len(bundle.eval.queries) < 50 or len(bundle.eval.corpus) <= k:
        lines.append((logging.WARNING, f"the evaluation set is tiny ({len(bundle.eval.queries)} queries, "
                                       f"{len(bundle.eval.corpus)} documents, k = {k}): its numbers mean little"))
    return lines


def validation_words(where: dict[str, int]) -> str:
    """Where the validation split came from, in words (``DataInfo.validation_from``)."""
    if "source" in where:
        return "the data source's own split"
    words = f"queries: {where.get('spare', 0)} spare, {where.get('training', 0)} from training"
    if "distractors_from_spare" in where:
        words += (f"; distractors: {where['distractors_from_spare']} spare, "
                  f"{where.get('distractors_from_training', 0)} rows held out of training")
    if where.get("training_rows_removed"):
        words += f"; {where['training_rows_removed']} training rows left training"
    return words


def with_validation(recipe: Recipe, bundle: DataBundle) -> tuple[DataBundle, dict[str, int]]:
    """The bundle with its validation split (the source's own, else one carved here), and where
    the validation queries came from."""
    from ..data.split import ValidationSize, carve_validation

    v = recipe.settings.validation
    if v.queries == 0:
        return replace(bundle, validation=None, spare=[]), {}
    if bundle.validation is not None:
        leaked = find_leaks(bundle.training_texts(), bundle.validation)
        if any(leaked):
            raise PluginError(f"data source '{recipe.data.name}' gave a validation set that leaks: {leaked[0]} "
                              f"queries and {leaked[1]} relevant documents also occur in its training rows.")
        return bundle, {"source": len(bundle.validation.queries)}
    size = ValidationSize(v.queries, v.corpus, v.from_training, v.positive_threshold)
    carved = carve_validation(bundle, size, seed=recipe.settings.seed, where=f"{recipe.path}: [validation]")
    validation_from = {"spare": carved.from_spare, "training": carved.from_training}
    if carved.training_rows_removed:
        validation_from["training_rows_removed"] = carved.training_rows_removed
    validation_from |= {"distractors_from_spare": carved.distractors_from_spare,
                        "distractors_from_training": carved.distractors_from_training,
                        "corpus_asked": carved.corpus_asked}
    return carved.bundle, validation_from


def read_limit(recipe: Recipe) -> int:
    """How many characters of a text the run keeps: the model reads ``max_seq_length`` tokens (the
    recipe's, else the model's own, else 512), and a word piece covers fewer than
    :data:`~mrl_plugins.data.corpus.CHARS_PER_TOKEN` characters, so nothing it reads is cut."""
    from ..data.corpus import CHARS_PER_TOKEN
    from ..models import max_seq_length_from_files

    tokens = recipe.settings.model.max_seq_length or (
        max_seq_length_from_files(recipe.model.location) if recipe.model.is_local else None) or 512
    return tokens * CHARS_PER_TOKEN


def cut_long_texts(bundle: DataBundle, limit: int) -> DataBundle:
    """Every text of the bundle cut at ``limit`` characters before anything tokenises, compares or
    shingles it, as ``mrl-run index`` and ``embed`` cut documents: a 100 MB line in a training file
    no longer takes the tokenizer's memory with it. Counted in the source's summary (``cut_texts``)
    and said; a bundle with nothing that long is returned as it is."""
    from dataclasses import replace as copy

    from ..data.types import IRSet, rows_to_dataset

    def long(text: object) -> bool:
        return isinstance(text, str) and len(text) > limit

    columns = [c for c in bundle.train.column_names if c != "score"]
    counts = {"training": sum(long(t) for c in columns for t in bundle.train[c]),
              "spare": sum(long(v) for r in bundle.spare for v in r.values())}
    sets = {"held-out": bundle.eval, **({"validation": bundle.validation} if bundle.validation else {})}
    counts |= {name: sum(long(t) for t in (*ir.queries.values(), *ir.corpus.values())) for name, ir in sets.items()}
    if not any(counts.values()):
        return bundle

    def cut(value: object) -> object:
        return value[:limit] if long(value) else value  # type: ignore[index]

    def cut_set(ir: IRSet) -> IRSet:
        return IRSet({k: str(cut(v)) for k, v in ir.queries.items()}, {k: str(cut(v)) for k, v in ir.corpus.items()},
                     ir.relevant)

    rows = [{k: cut(v) for k, v in r.items()} for r in bundle.train.to_list()] if counts["training"] else None
    found = {k: v for k, v in counts.items() if v}
    logger.warning("%s text(s) longer than %s characters (%s) were cut there before tokenising: the model reads "
                   "its max_seq_length tokens of a text, never more", sum(found.values()), f"{limit:,}",
                   ", ".join(f"{v} {k}" for k, v in found.items()))
    return copy(
        bundle,
        train=rows_to_dataset(rows, bundle.row_format) if rows is not None else bundle.train,
        eval=cut_set(bundle.eval) if counts["held-out"] else bundle.eval,
        validation=cut_set(bundle.validation) if bundle.validation is not None and counts.get("validation") else
        bundle.validation,
        spare=[{k: cut(v) for k, v in r.items()} for r in bundle.spare] if counts["spare"] else bundle.spare,
        summary={**bundle.summary, "cut_texts": {**found, "limit_chars": limit}},
    )


def read_data_source(recipe: Recipe) -> DataBundle:
    """The data source's bundle, checked against the contract: columns, no leaks, a usable eval set."""
    spec = recipe.data
    who = f"data source '{spec.name}' (plugin '{spec.plugin}')"
    request = DataRequest(row_format=recipe.row_format, seed=recipe.settings.seed, recipe_dir=recipe.base_dir)
    try:
        bundle = plugin_call(spec, "load", request)
    except PluginFailed as exc:
        if isinstance(exc.__cause__, IRSetError):
            raise PluginError(f"{who} built an inconsistent evaluation set: {exc.__cause__}. The plugin must "
                              "fix it.") from None
        raise
    if not isinstance(bundle, DataBundle):
        raise PluginError(f"{who}: load() returned {type(bundle).__name__}, not a DataBundle; the plugin does not "
                          "follow the contract (see docs/plugin-guide.md, 'Data types').")
    expected = list(recipe.row_format.columns)
    if list(bundle.train.column_names) != expected:
        raise PluginError(f"{who} returned columns {bundle.train.column_names}, expected {expected}; "
                          "the plugin does not follow the contract.")
    bundle = cut_long_texts(bundle, read_limit(recipe))
    leaked = find_leaks(bundle.training_texts(), bundle.eval)
    if any(leaked):
        raise UserError(f"{who} leaks: {leaked[0]} evaluation queries and {leaked[1]} relevant documents also occur "
                        "in the training rows. Fix the data or the source's split.")
    if not bundle.eval.queries:
        raise UserError(f"{who} produced an empty evaluation set; nothing to measure.")
    if bundle.eval.dropped_queries:
        logger.warning("%s: %d evaluation queries had no relevant document and were left out (%d remain)",
                       who, bundle.eval.dropped_queries, len(bundle.eval.queries))
    return bundle
