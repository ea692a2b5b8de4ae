"""What a finished run writes for people, and pushes: the run's model with its default width,
mrl.json, serving metadata and card (:mod:`.model`), the report (:mod:`mrl_plugins.present.report`),
and the push to the Hub when the recipe asks for it. ``mrl-run`` and the sweep hand
:func:`write_run_documents` to the run (:data:`mrl_plugins.run.pipeline.Documents`), which writes
the evidence alone."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..evidence.results import PublishInfo, RunResults
from ..evidence.rundir import RunDir
from ..present.report import write_report
from .model import write_publication

if TYPE_CHECKING:
    from ..recipe import Recipe


def write_run_documents(run: RunDir, results: RunResults, recipe: Recipe) -> None:
    """The model's default width, mrl.json and card (not for a sweep's trial: its model is not one
    to publish, the sweep's final run is), then the report; before results.json is written, which
    then records the published default."""
    pub = recipe.settings.publish
    if results.trial is None:
        meta = write_publication(run.model, results, pub.truncate_dim, pub.repo_id)
        results.publish = PublishInfo(truncate_dim=meta["truncate_dim"], recommended_dims=meta["recommended_dims"])
    write_report(run.path, results)


def push_if_asked(out: Path, results: RunResults, recipe: Recipe) -> None:
    """Push a finished run's model when its recipe says ``[publish] push = true`` (validation has
    refused a push without a ``repo_id`` or a token)."""
    from .push import publish_run

    pub = recipe.settings.publish
    if pub.push and pub.repo_id and results.trial is None:
        publish_run(out, results, repo_id=pub.repo_id, private=pub.private, revision=pub.revision)
