"""The validation split: the set every choice of a run is made on, never the evaluation set.

A run *chooses* (the recommended width, what to serve, which column to publish, the adaptor's
stopping epoch and where it is used) and then *reports* those choices on the held-out evaluation
set. Choosing on the evaluation set itself flatters every choice by the luck of those queries;
on unseen data the chosen setting then loses. So each run carves a validation set here, after
the data source has split off its evaluation set:

* Queries come first from the source's **spare** rows (read, but beyond what it trains on:
  choosing then costs training nothing, and the trained models are those of a run without a
  validation split), then from training rows, at most ``from_training`` of them, which leave
  training. Every row whose query or relevant document is a validation text leaves training too.
* The corpus is the validation queries' documents, then distractors: spare documents first,
  then documents of the remaining training rows (those stay in training; a distractor that was
  trained on is no leak, only a document that is not the answer).
* Nothing in it occurs in the evaluation set (compared as :func:`~mrl_plugins.data.normalise_text`).

The recipe's ``[validation]`` table sizes it; ``queries = 0`` turns it off, and every choice is
then made on the evaluation set, which the report says in so many words.
"""

from __future__ import annotations

import logging

logger = logging.getLogger("mrl_plugins")


