"""Query time, measured the way a noisy machine allows: side by side, as ratios.

Every configuration is timed in the same rounds as the reference (exact full-dimension float32
search), interleaved, after a warm-up; a configuration's ratio is its median time over the
reference's median time in the same run. Absolute milliseconds are context only.

A ratio is only as fair as the kernels under both sides: FAISS's wheels bundle their own OpenBLAS,
which on some CPUs picks a generic kernel (threadpoolctl's ``architecture``) while numpy's runs a
tuned one. :func:`blas_summary` says which libraries, kernels and thread counts a measurement ran
on; every search comparison records it, and the benchmark prints it. Where FAISS's OpenBLAS
misdetects the CPU, ``OPENBLAS_CORETYPE=Haswell`` (or the CPU's family) set before the process
starts makes it use the tuned kernel.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from ..evaluation.metrics import SearchCost

Search = Callable[[np.ndarray], object]
K = TypeVar("K", bound=Hashable)
"""Searches a batch of queries (full-dimension float32 rows); the result is ignored."""


@dataclass(frozen=True)
class Timing:
    ms_single: float
    """Median milliseconds per query, one query at a time."""
    ms_batch: float
    """Milliseconds per query with all queries in one call (median over rounds)."""
    ms_single_p95: float = 0.0
    """95th percentile milliseconds per query, one query at a time."""


def measure(
    searches: Mapping[K, Search], queries: np.ndarray, *, single: int = 100, rounds: int = 3, warmup: int = 5
) -> dict[K, Timing]:
    """Time each search one query at a time (on ``single`` queries) and in one batch, interleaved
    round by round so that the machine's noise falls on all of them alike."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    picked = queries[: max(1, min(single, len(queries)))]
    for search in searches.values():  # warm caches, graphs and thread pools
        for q in picked[:warmup]:
            search(q[None, :])
    singles: dict[K, list[float]] = {name: [] for name in searches}
    batches: dict[K, list[float]] = {name: [] for name in searches}
    for _ in range(rounds):
        for name, search in searches.items():
            for q in picked:
                t0 = time.perf_counter()
                search(q[None, :])
                singles[name].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            search(queries)
            batches[name].append((time.perf_counter() - t0) / len(queries))
    return {
        name: Timing(statistics.median(singles[name]) * 1e3, statistics.median(batches[name]) * 1e3,
                     sorted(singles[name])[min(len(singles[name]) - 1, int(0.95 * len(singles[name])))] * 1e3)
        for name in searches
    }


def blas_summary() -> str:
    """The BLAS libraries loaded in this process, with the kernel each runs and its threads, and
    the OpenMP threads FAISS uses: ``faiss OpenBLAS 0.3.15 (Zen kernel, 2 threads); numpy OpenBLAS
    0.3.31 (Haswell kernel, 2 threads); OpenMP 2 threads``."""
    import faiss  # noqa: F401  (loaded, so that its BLAS is listed)
    from threadpoolctl import threadpool_info

    libraries, parts = threadpool_info(), []
    for lib in libraries:
        if lib.get("user_api") != "blas":
            continue
        path = str(lib.get("filepath", ""))
        owner = "faiss" if "faiss" in path else "numpy" if "numpy" in path else "scipy" if "scipy" in path else "other"
        kernel = f"{lib['architecture']} kernel, " if lib.get("architecture") else ""
        parts.append(f"{owner} {lib.get('internal_api', lib.get('prefix'))} {lib.get('version') or ''}".rstrip()
                     + f" ({kernel}{lib.get('num_threads')} threads)")
    openmp = next((lib.get("num_threads") for lib in libraries if lib.get("user_api") == "openmp"), None)
    if openmp is not None:
        parts.append(f"OpenMP {openmp} threads")
    return "; ".join(parts) or "no BLAS library reported by threadpoolctl"


def search_cost(timing: Timing, reference: Timing, *, index_bytes: float, rerank_bytes: float = 0.0) -> SearchCost:
    """A configuration's cost, its times as ratios to the reference measured alongside it."""
    return SearchCost(
        index_bytes=round(index_bytes, 2), rerank_bytes=round(rerank_bytes, 2),
        ms_single=round(timing.ms_single, 5), ms_batch=round(timing.ms_batch, 5),
        ms_single_p95=round(timing.ms_single_p95, 5) if timing.ms_single_p95 else None,
        ratio_single=round(timing.ms_single / reference.ms_single, 4),
        ratio_batch=round(timing.ms_batch / reference.ms_batch, 4),
    )
