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
