"""``mrl-run publish``: push a finished run's model (and its exports) to the Hub."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..components import Command

if TYPE_CHECKING:
    from ..evidence.results import RunResults
    from ..evidence.rundir import RunDir
from ..errors import UserError
from .logs import setup_logging


class Publish(Command):
    """Push a finished run's model to the Hub (retries a failed push)."""

    name = "publish"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("output_dir", type=Path, help="A run's output directory (holds results.json and model/).")
        parser.add_argument("--repo-id", help="Hub repo 'user/name' (default: the recipe's [publish] repo_id).")
        parser.add_argument("--truncate-dim", help='Default dimension of the published model, or "recommended".')
        parser.add_argument("--revision", help="Branch to push to (default: the recipe's, else main).")
        parser.add_argument("--private", action="store_true", default=None, help="Create the repo as private.")
        parser.add_argument("--model", default="model",
                            help="Which of the run's models: model (MRL, the default) or one a comparison saved, e.g. "
                            "comparisons/adaptor-mrl/model (its card then carries that column's numbers).")
        parser.add_argument("--export", action="append", type=Path, default=[], metavar="DIR",
                            help="An 'mrl-run export' folder of this model to push beside it (onnx/ or openvino/, "
                            "named mrl_embedding_<dim>[_int8]); repeat for several.")

    def run(self, args: argparse.Namespace) -> int:
        setup_logging()
        return publish(PublishRequest.from_args(args))


@dataclass(frozen=True)
class PublishRequest:
    """What to push where, the run's recipe filling what the command line leaves out; ``given``
    keeps the command line's own options, which the retry command repeats."""

    run: RunDir
    results: RunResults
    model: str
    """The run's model folder to push, relative to the run (``model``, or a comparison's)."""
    repo_id: str
    truncate_dim: int | str | None
    private: bool
    revision: str | None
    exports: tuple[Path, ...]
    given: dict[str, Any]

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> PublishRequest:
        from ..evidence.rundir import RunDir

        run = RunDir.open(args.output_dir)
        results = run.results()
        settings = run.recipe_table("publish")
        if not (run.saved(args.model) / "modules.json").is_file():
            raise UserError(f"{run.saved(args.model)}: no saved model there; pass the output_dir of a completed "
                            "'mrl-run' (and with --model, a folder it saved).")
        repo_id = args.repo_id or settings.get("repo_id")
        if not repo_id:
            raise UserError("no repo id: pass --repo-id user/name or set [publish] repo_id in the recipe.")
        truncate_dim = None
        if args.truncate_dim is not None:
            dim = args.truncate_dim
            truncate_dim = dim if dim == "recommended" else _positive_int(dim)
        private = args.private if args.private is not None else settings.get("private", False)
        given = {"repo_id": args.repo_id, "truncate_dim": args.truncate_dim, "revision": args.revision,
                 "private": bool(args.private), "model": args.model, "exports": list(args.export)}
        revision = args.revision or settings.get("revision")
        return cls(run, results, args.model, repo_id, truncate_dim, bool(private), revision, tuple(args.export), given)


def publish(request: PublishRequest) -> int:
    from ..publish.push import publish_run, retry_command

    out = request.run.path
    retry = retry_command(out, **request.given)
    url = publish_run(out, request.results, repo_id=request.repo_id, private=request.private,
                      revision=request.revision, truncate_dim=request.truncate_dim, retry=retry, model=request.model,
                      exports=list(request.exports))
    print(f"pushed {out / request.model} to {request.repo_id}: {url}")
    return 0


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise UserError(f"--truncate-dim {text}: expected a positive whole number or \"recommended\".")
    return int(text)
