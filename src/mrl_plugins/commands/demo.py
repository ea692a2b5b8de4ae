"""``mrl-run demo``: serve the page where the width is a slider."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..components import Command
from .args import port
from .logs import setup_logging


class Demo(Command):
    """A local page to search a run's corpus with a dimension slider (Gradio)."""

    name = "demo"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("run_dir", type=Path, help="A finished run's output directory.")
        parser.add_argument("--index", type=Path,
                            help="Search this index (built by 'mrl-run index' from the run) instead.")
        parser.add_argument("--host", default="127.0.0.1",
                            help="Interface to serve on (default 127.0.0.1: this machine only).")
        parser.add_argument("--port", type=port, default=7860, help="Port to serve on (1-65535, default 7860).")

    def run(self, args: argparse.Namespace) -> int:
        from ..present.demo import serve

        setup_logging(quiet=True)
        serve(args.run_dir, index=args.index, host=args.host, port=args.port)
        return 0
