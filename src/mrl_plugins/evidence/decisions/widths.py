"""How narrow to go: the smallest width keeping a share of full-width quality, with a margin."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ..results import KEEP_SHARES, MRL, RunResults
from .margins import Margin, basis, margin, smallest_width


@dataclass(frozen=True)
class WidthChoice:
    """The smallest width keeping a share of a column's full-width quality, chosen with a margin."""

    share: float
    width: int
    by_mean: int
    """The smallest width whose mean keeps the share on validation (what 0.8 chose)."""
    noise: Margin | None = None
    """When ``by_mean`` is smaller than ``width``: its margin over the share, within noise."""


def narrowest(dims: Iterable[int], keeps: Callable[[int], bool],
              beyond_noise: Callable[[int], bool | None]) -> tuple[int, int | None]:
    """The width rule every width choice follows (the run's, and each ``[[task]]``'s): the
    narrowest width that keeps the share on average (``keeps``) and beyond noise
    (``beyond_noise``: ``None`` when nothing can weigh it, and the mean decides); the full width
    when none does. Widths that keep it on average but within noise are passed over, the wider
    being the simpler choice. Returns the width and the first width passed over (or ``None``)."""
    ordered = sorted(dims)
    passed = None
    for d in ordered[:-1]:
        if not keeps(d):
            continue
        verdict = beyond_noise(d)
        if verdict is None or verdict:
            return d, passed
        passed = d if passed is None else passed
    return ordered[-1], passed


def width_choice(results: RunResults, share: float, column: str = MRL) -> WidthChoice:
    """The smallest width whose validation score keeps ``share`` of the column's full-width score
    beyond noise (a paired sign-flip test over the validation queries: :func:`narrowest`); the
    full width when none does."""
    on, full = basis(results, column), results.full_dim

    def test(d: int) -> Margin | None:
        return margin(results, column, d, against=column, against_dim=full, share=share)

    width, passed = narrowest(results.dims, lambda d: on.value(column, d) >= share * on.value(column, full),
                              lambda d: None if (found := test(d)) is None else found.beyond_noise)
    return WidthChoice(share, width, smallest_width(on, column, share) or full,
                       test(passed) if passed is not None else None)


def recommended_widths(results: RunResults, column: str = MRL) -> dict[float, int]:
    """Per share in :data:`KEEP_SHARES` (0.99, 0.95): the smallest width keeping that share of the
    column's full-width :data:`PRIMARY` score on validation beyond noise (:func:`width_choice`);
    the full width when no smaller one does."""
    return {share: width_choice(results, share, column).width for share in KEEP_SHARES}


def example_width(results: RunResults, column: str = MRL) -> tuple[float, int]:
    """A real truncation to show: the ≥ 99% width, or the ≥ 95% one when only the full width keeps 99%."""
    widths = recommended_widths(results, column)
    high, low = max(widths), min(widths)
    return (high, widths[high]) if widths[high] < results.full_dim else (low, widths[low])
