"""What a run's evidence recommends, as pure functions over :class:`RunResults`.

The report, the model card, ``mrl.json``, the demo and ``mrl-run index`` all ask these functions
and print what they return; none of them decides anything itself. Shares are numbers (``0.99``),
configurations are :class:`OperatingPoint` s whose parameters come from the column's recorded
``params`` (never from its label).

Every choice is made on the run's **validation split** (its ``validation`` columns, read as
:meth:`RunResults.scored` gives them: :func:`basis`). Where the options differ in what they risk,
**with a margin**: a narrower width or a cheaper serving setting is taken only when it keeps the
share asked beyond the noise of the validation queries (a paired sign-flip test on their scores,
:func:`margin`); within noise the wider width, or exact full-width search, wins. Where they cost
the same (the adaptor or not at a width: one small linear layer; which of the run's models to
publish at a width), **the better mean** is taken, and a lead within noise is said, with its
p-value. Issue #36 asked for the margin on every choice; measured on the three shipped datasets
(``benchmarks/bench_validation.py``, docs/benchmarks.md) it kept plain MRL where the adaptor was
better held out by 0.026 to 0.098, at 11 of 37 choices; the better mean missed 1 of 37. A margin
buys safety only where one option has something to lose, and with a validation split of unseen
text (no longer flattering fitted columns) there is none to buy between equal-cost options. That
rule was set after looking at those three datasets, so they do not confirm it. It is then reported on the
held-out evaluation set: a width or a setting picked on the queries it is then
scored on flatters itself by their luck. A run written before schema 5 kept no per-query
validation scores: its choices take any positive difference, as they were made. A run without a
validation split (``[validation] queries = 0``, or written before schema 4) chooses on the
evaluation set, and
:attr:`RunResults.chosen_on` says so for the sentence that reports the choice.
"""

from .columns import (
    ColumnChoice,
    Gate,
    adaptor_gates,
    best_column,
    column_choice,
    plain_mrl,
    strongest_alternative,
)
from .margins import Margin, basis, margin, smallest_width
from .serving import (
    By,
    OperatingPoint,
    ServingDecision,
    cheapest,
    chosen_point,
    column_setting,
    dominates,
    held_out,
    index_setting,
    index_width,
    operating_points,
    pareto_front,
    serving_choice,
    serving_decision,
    truncation_on_front,
)
from .widths import WidthChoice, example_width, recommended_widths, width_choice

__all__ = [
    "By", "ColumnChoice", "Gate", "Margin", "OperatingPoint", "ServingDecision", "WidthChoice", "adaptor_gates",
    "basis", "best_column", "cheapest", "chosen_point", "column_choice", "column_setting", "dominates",
    "example_width", "held_out", "index_setting", "index_width", "margin", "operating_points", "pareto_front",
    "plain_mrl", "recommended_widths", "serving_choice", "serving_decision", "smallest_width",
    "strongest_alternative", "truncation_on_front", "width_choice",
]
