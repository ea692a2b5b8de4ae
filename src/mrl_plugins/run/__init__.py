"""One run of a recipe, a module per concern, read top-down from :mod:`.pipeline`.

``pipeline``  set up → evaluate base → train → evaluate → compare → save → publish
``context``   the one object the stages share; this process's place in a distributed launch
``training``  trainer arguments, each model's loss, the warm start, reuse on ``--resume``
``scoring``   encode once per model, score every dimension, run the comparisons
``staging``   the hidden staging folder, finishing a run, resuming an interrupted one
"""

from .pipeline import run

__all__ = ["run"]
