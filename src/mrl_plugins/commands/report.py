"""``mrl-run report``: rewrite a finished run's report from its results.json."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..components import Command


class Report(Command):
    """Rewrite a finished run's report.md and metrics.png from results.json."""

    name = "report"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("output_dir", type=Path, help="A run's output directory (holds results.json).")

    def run(self, args: argparse.Namespace) -> int:
        return rewrite_report(args.output_dir)


def rewrite_report(output_dir: Path) -> int:
    """Write the run's report and plots again from its results.json, and print its tables."""
    from ..errors import UserError
    from ..evidence.rundir import RunDir
    from ..outputs.destination import cannot_write
    from ..present.report import format_table, write_report

    run = RunDir.open(output_dir)
    results = run.results()
    why = cannot_write(run.path)
    if why:
        raise UserError(f"{run.path}: cannot rewrite the report there: {why}. Nothing was changed; copy the run "
                        "folder somewhere you can write and run 'mrl-run report' on the copy.")
    write_report(run.path, results)
    print(format_table(results))
    print(f"Rewrote {run.report_file} and {run.metrics_plot} from {run.results_file.name}.")
    return 0
