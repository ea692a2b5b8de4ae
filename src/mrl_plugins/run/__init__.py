"""One run of a recipe, a module per concern, read top-down from :mod:`.pipeline`.

``pipeline``  set up → evaluate base → train → evaluate → compare → save (the caller writes the
              documents for people: the card and the report, :data:`.pipeline.Documents`)
``context``   the one object the stages share; this process's place in a distributed launch
``training``  trainer arguments, each model's loss, the warm start, reuse on ``--resume``
``scoring``   encode once per model, score every dimension, run the comparisons
``staging``   the hidden staging folder, finishing a run, resuming an interrupted one

The engine imports no presenter, publisher or command (``tests/test_layers.py``).
"""

from .pipeline import run

__all__ = ["run"]
