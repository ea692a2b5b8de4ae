"""Data source ``docstrings``: a Python docstring's summary → the rest of the docstring.

Reads the pairs ``scripts/make_docstrings_sample.py`` cuts from the standard library of CPython
3.11 (``data/python311-docstrings-pairs.jsonl.xz``, the same JSON-lines shape as the manual
pages: ``query`` and ``document``). It is the project's **confirmation** dataset: no shipped
default or piece of advice was chosen on it, so a default that holds here holds on data it never
saw (docs/defaults.md keeps the account). Reading and splitting are the ``manpages`` source's.
"""

from __future__ import annotations

from pydantic import Field

from ..hookspecs import hookimpl
from .manpages import ManpagesParams, ManpagesSource


class DocstringsParams(ManpagesParams):
    path: str = Field(description="Pairs made by scripts/make_docstrings_sample.py (.jsonl or .jsonl.xz), relative "
                                  "to the recipe.")
    eval_queries: int = Field(500, gt=0, description="Docstrings held out as evaluation queries.")
    corpus_size: int = Field(1500, gt=0, description="Evaluation corpus: held-out documents plus distractors.")


class DocstringsSource(ManpagesSource):
    """Python standard-library docstrings: the summary line → the rest of the docstring (confirmation data)."""

    name = "docstrings"
    Params = DocstringsParams


@hookimpl
def register_data_sources(register):
    register(DocstringsSource)
