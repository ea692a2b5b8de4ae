"""Matryoshka Representation Learning recipes for sentence-transformers, extended by plugins."""

from __future__ import annotations

__version__ = "0.9.0"

from .hookspecs import hookimpl  # plugin authors: `from mrl_plugins import hookimpl`

__all__ = ["__version__", "hookimpl"]
