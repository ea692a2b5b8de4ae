"""``mrl-run index`` tunes on the corpus it indexes (issue #37, item 1).

A run chooses how to serve on its validation corpus: about a thousand documents, where exact
search takes microseconds and a shortlist that finds the exact top 10 is short. At ten or a
hundred times that corpus the same shortlist finds less, and exact search is slower too, so the
run's choice can both lose recall and stop paying. The corpus being indexed is the one place
where both are known, without labels: for a set of probe queries, how much of the exact
full-width top 10 a setting finds (recall@10 against exact, a document tied with the exact 10th
counting as found: :func:`~mrl_plugins.evaluation.retrieval.overlap_at_k`), and how long it takes.

What is measured, on the vectors just embedded (every document of the corpus):

- **probes**: the user's own queries (``--probe FILE``, embedded by the model); else, when the
  model is given as a run's folder, up to 200 of the run's validation queries (kept by the run in
  ``evaluation/validation_queries.json.gz``: worded as its queries are, and unseen by anything it
  fitted); else pseudo-queries: the first words of a seeded sample of the corpus's documents,
  embedded as queries (said so: real queries may differ from the corpus's own openings). On the
  whole Debian catalogue (135,117 paragraphs) the setting chosen found 0.968 of the exact top 10
  for pseudo-queries, 0.953 for the quickstart run's validation queries and 0.933 for 1,000 real
  queries; on 30,550 paragraphs the three agreed within 0.01 (docs/benchmarks.md, "Probes worded
  as queries");
- **candidates**: shortlist widths (the model's Matryoshka widths when a run or ``mrl.json``
  names them, else an eighth, a quarter and a half of the full width, and the full width, plus
  the widths a backend is fastest at, :attr:`~mrl_plugins.components.IndexBackend.fast_dims`:
  binary codes of 128 and 256 dims, whatever the model was trained at) ×
  every registered shortlist backend that keeps its index in the folder (built in: flat, int8,
  binary codes, HNSW, IVF; a plugin's too), each with its default parameters and a float32
  rerank store (:data:`STORES` says why not int8) × shortlist sizes (10 to 1,000): for each
  backend and width, the smallest shortlist that meets the recall target, or the largest
  measured when none does. **Meets with a margin**: the one-sided 95% lower bound of the mean
  recall over the probe queries (mean − 1.645 · standard error, :func:`recall_bounds`) must reach
  the target, not the mean alone, as a run's own choices leave the safe option only beyond the
  noise of their validation queries (issue #36). On the whole Debian catalogue the quickstart's
  validation queries put binary 256 with a shortlist of 200 at a mean of 0.953, just over 0.95,
  and the benchmark's 1,000 real queries found 0.933 through it; with the margin tuning takes a
  shortlist of 500 there, and the real queries find 0.963 (docs/benchmarks.md, "Recall with a
  margin");
- **time**: every candidate that meets the target (with the margin) and exact search, one query
  at a time (p50 and p95 milliseconds) and in one batch, interleaved round by round so that noise
  falls on all alike, at one thread (OpenMP and BLAS; a one-query search is not worth spreading);
- **choice**: among the candidates that meet ``--recall`` (default 0.95 of the exact top 10),
  that are at least 20% faster than exact search one query at a time (a setting slower than
  exact is never the one to serve; 20% keeps timing noise from choosing) and, with
  ``--latency-ms``, whose p50 is within it: **the fastest one query at a time among those whose
  shortlist index holds at most ``--memory`` bytes per vector in RAM** (default 32, a 48th of
  float32 at 384 dims; the rerank store is memory-mapped from disk), the least memory among
  those within 10% of the fastest (timing noise does not choose); when none fits the budget,
  the least memory, ties to the faster. ``--memory 0`` is the least memory always (0.9's rule).
  Why a budget and not the least memory: below a few tens of bytes a vector the RAM is rarely
  what binds, and the least memory can cost several times the time: FAISS scans codes of 16 and
  32 bytes with dedicated kernels, 12, 24 and 48 bytes without, so binary 192 (24 bytes) took
  2–3× binary 256's scan time on 135,117 documents (``benchmarks/bench_hamming.py``). When none
  qualifies, the index is exact search, and the record says why.

Everything measured goes into the index's ``manifest.json`` (``tuning``), which ``mrl-run search
--explain`` prints. An explicit ``--dim``/``--index``/``--store``/``--quantize`` skips the choice
but the built setting's recall is still measured and recorded the same way.

Anchor: FAISS's ``OperatingPoints``/``ParameterSpace`` autotuning (measure a grid of settings on
the data, keep the Pareto-optimal ones, pick by a target); here the grid includes the Matryoshka
width, which FAISS's autotuning has no notion of.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError
from ..evaluation.retrieval import overlap_per_query
from ..indexes import FASTER_THAN_EXACT

K = 10
SHORTLISTS = (10, 20, 50, 100, 200, 500, 1000)
"""Shortlist sizes tried, smallest first (each at most the corpus)."""
MEMORY_BYTES = 32.0
"""``--memory``'s default: bytes per vector of shortlist index within which tuning chooses by time."""
NEAR_FASTEST = 1.1
"""Within the budget, settings within this factor of the fastest p50 count as equally fast."""
PROBES = 200
"""Pseudo-queries drawn from the corpus when no --probe file is given."""
PSEUDO_WORDS = 12
"""Words of a document's opening that make its pseudo-query."""
TIMED = 100
"""Probe queries timed one at a time."""


@dataclass(frozen=True)
class Probes:
    """The queries tuning measures with: full-width float32 vectors, and where they came from."""

    vectors: np.ndarray
    source: str
    """``"file"`` (the user's queries), ``"validation queries"`` (the run's, when the model is a
    run's), ``"pseudo-queries"`` (documents' openings) or ``"documents"`` (document vectors
    themselves, when no model is at hand to embed text)."""
    detail: str


@dataclass(frozen=True)
class Candidate:
    """One setting measured on the corpus."""

    dim: int
    index: str
    store: str
    shortlist: int
    recall: float
    """Mean share of the exact full-width top 10 found, over the probes."""
    index_bytes: float
    """Bytes per vector the shortlist index holds in memory."""
    rerank_bytes: float
    p50_ms: float | None = None
    p95_ms: float | None = None
    batch_ms: float | None = None
    """Milliseconds per query, all probes in one call."""
    recall_low: float | None = None
    """The one-sided 95% lower bound of :attr:`recall` over the probes (:func:`recall_bounds`);
    ``None`` in a manifest written before tuning kept it."""

    @property
    def label(self) -> str:
        store = {"int8": " + int8 rescore", "float16": " + float16 rerank"}.get(self.store, "")
        return f"{self.index} {self.dim}{store}, shortlist {self.shortlist}"


@dataclass
class Tuning:
    """What tuning measured and chose; :meth:`record` is what the manifest keeps."""

    recall_target: float
    latency_ms: float | None
    probes: Probes
    corpus: int
    exact: dict[str, float]
    candidates: list[Candidate] = field(default_factory=list)
    chosen: Candidate | None = None
    reason: str = ""
    skipped: list[str] = field(default_factory=list)
    """Backends and widths that could not be built here, with why."""
    explicit: bool = False
    """The setting was given on the command line: measured, not chosen."""
    memory_bytes: float = MEMORY_BYTES
    """``--memory``: bytes per vector of shortlist index within which the choice goes by time."""

    def record(self) -> dict[str, Any]:
        return {
            "recall_target": self.recall_target, "latency_ms": self.latency_ms, "memory_bytes": self.memory_bytes,
            "k": K,
            "probe": {"source": self.probes.source, "queries": len(self.probes.vectors),
                      "detail": self.probes.detail},
            "corpus": self.corpus, "threads": 1, "exact": self.exact, "explicit": self.explicit,
            "candidates": [{**asdict(c), "label": c.label} for c in self.candidates],
            "chosen": None if self.chosen is None else self.chosen.label, "reason": self.reason,
            "skipped": self.skipped,
        }


MARGIN_Z = 1.645
"""Standard errors below the mean recall that a setting must still meet the target at: a one-sided
95% lower bound (the normal approximation; 200 probe queries by default)."""


def recall_bounds(shares: np.ndarray) -> tuple[float, float]:
    """The mean of per-query recalls and its one-sided 95% lower bound (the mean itself for one
    query, which has no spread to measure)."""
    shares = np.asarray(shares, dtype=np.float64)
    mean = float(shares.mean())
    if len(shares) < 2:
        return mean, mean
    return mean, mean - MARGIN_Z * float(shares.std(ddof=1)) / float(np.sqrt(len(shares)))


def measured(index: Any, ids: np.ndarray, exact_ids: np.ndarray, queries: np.ndarray, unit: np.ndarray, *,
             dim: int, name: str, store: str, shortlist: int, costs: tuple[float, float] | None = None) -> Candidate:
    """The candidate ``index`` is, from the ids it returned for the probes: its recall of their exact
    top 10 with the lower bound, and its bytes per vector (``costs``: already read from this index,
    the same for every shortlist; an ``ivf`` index knows them only after its first search)."""
    recall, low = recall_bounds(overlap_per_query(ids, exact_ids, exact_ids.shape[1], queries=queries, corpus=unit))
    index_bytes, rerank_bytes = costs or (round(index.index_bytes(), 2), round(index.rerank_bytes(), 2))
    return Candidate(dim, name, store, shortlist, round(recall, 4), index_bytes, rerank_bytes, recall_low=round(low, 4))


def meets(candidate: Candidate, target: float) -> bool:
    """Whether ``candidate`` finds ``target`` of the exact top 10 beyond the probes' noise."""
    return (candidate.recall if candidate.recall_low is None else candidate.recall_low) >= target


def widths(full: int, matryoshka: Sequence[int] | None) -> list[int]:
    """The shortlist widths tried: the model's Matryoshka widths, else an eighth, a quarter and
    a half of the full width, and the full width (none under 16)."""
    given = [d for d in (matryoshka or []) if 0 < d <= full]
    dims = given or [full // 8, full // 4, full // 2, full]
    return sorted({d for d in dims if d >= 16} | {full})


STORES = ("float32",)
"""Rerank stores tried. The store is memory-mapped from disk, so what it holds per vector is disk,
not the RAM the choice minimises; an int8 store (a quarter of float32's disk) then never uses less
RAM, and its rescore is slower (it decodes every candidate) and less exact. It stays an explicit
``--store int8``, measured like any explicit setting."""


def exact_top(unit: np.ndarray, queries: np.ndarray, k: int = K) -> np.ndarray:
    """The exact full-width top ``k`` of each query (FAISS flat inner product, block by block)."""
    import faiss

    index = faiss.IndexFlatIP(unit.shape[1])
    for start in range(0, len(unit), 65536):
        index.add(np.ascontiguousarray(unit[start : start + 65536], dtype=np.float32))
    _, ids = index.search(np.ascontiguousarray(queries, dtype=np.float32), min(k, len(unit)))
    return ids


def one_thread() -> contextlib.AbstractContextManager[None]:
    """OpenMP (FAISS) and BLAS at one thread for the block, restored after."""
    from .index import search_threads

    return search_threads(1)


def timed(searches: dict[Any, Callable[[np.ndarray], object]], queries: np.ndarray) -> dict[Any, dict[str, float]]:
    """p50 and p95 milliseconds one query at a time and milliseconds per query batched, every
    search timed in the same interleaved rounds (:func:`~.timing.measure`), at one thread."""
    from .timing import measure

    with one_thread():
        times = measure(searches, queries, single=TIMED)
    return {name: {"p50_ms": round(t.ms_single, 5), "p95_ms": round(t.ms_single_p95, 5),
                   "batch_ms": round(t.ms_batch, 5)} for name, t in times.items()}


def tune(unit: np.ndarray, probes: Probes, *, make_backend: Callable[[str], Any], names: Sequence[str], exact: str,
         matryoshka: Sequence[int] | None = None, recall_target: float = 0.95, latency_ms: float | None = None,
         memory_bytes: float = MEMORY_BYTES, progress: Callable[[str], None] = lambda _: None) -> Tuning:
    """Measure the candidate settings on ``unit`` (the corpus's unit-length full-width float32
    vectors) with ``probes`` and choose one (:data:`Tuning.chosen`; ``None``: exact search).
    ``names``: the shortlist backends to try (every registered one that keeps its index in the
    folder), each with its default parameters; ``exact``: the registry's exact backend, the
    reference. A backend that cannot build at a width (binary codes need a multiple of 8, an
    IVF needs more vectors than cells) is left out there, and the record says so."""
    from .index import FunnelIndex

    if not 0 < recall_target <= 1:
        raise UserError(f"--recall {recall_target}: must be above 0 and at most 1 (a share of the exact top 10).")
    count, full = unit.shape
    queries = probes.vectors
    exact_ids = exact_top(unit, queries)
    exact_index = FunnelIndex.over(unit, make_backend(exact), full)
    tuning = Tuning(recall_target, latency_ms, probes, count, {}, memory_bytes=memory_bytes)
    if recall_target >= 1:  # the exact top 10 for every query, not only for the probes: exact search
        times = timed({"exact": lambda q: exact_index.search(q, K)}, queries)
        tuning.exact = {**times["exact"], "index_bytes": round(exact_index.index_bytes(), 2)}
        tuning.reason = "--recall 1.0 asks for the exact top 10 of every query, which only exact search guarantees"
        return tuning
    built: dict[Candidate, FunnelIndex] = {}
    sizes = [s for s in SHORTLISTS if s < count] + [count] if count <= SHORTLISTS[-1] else list(SHORTLISTS)
    for name in names:
        backend = make_backend(name)
        stores = [store for store in STORES if store in backend.stores]
        dims = sorted({*widths(full, matryoshka), *(d for d in getattr(backend, "fast_dims", ()) if d < full)})
        progress(f"tuning: {name} shortlists ({', '.join(stores)} rerank) at widths "
                 f"{', '.join(str(d) for d in dims)} on {count:,} documents")
        for store, dim in ((store, dim) for store in stores for dim in dims):
            if (name, store, dim) == (exact, "float32", full):
                continue  # that is exact search, the reference
            # a backend's own limits (any plugin's) may show when it builds or at its first search
            # (ivf trains its cells then): either way that setting is left out, with why
            try:
                index = FunnelIndex.over(unit, make_backend(name), dim, store_dtype=store)  # type: ignore[arg-type]
                best = None
                for size in sizes:
                    ids = index.search(queries, K, shortlist=max(size, K)).ids
                    best = measured(index, ids, exact_ids, queries, unit, dim=dim, name=name, store=store,
                                    shortlist=max(size, K),
                                    costs=None if best is None else (best.index_bytes, best.rerank_bytes))
                    if meets(best, recall_target):
                        break
            except Exception as exc:
                tuning.skipped.append(f"{name} {dim} ({store}): {str(exc).splitlines()[0] if str(exc) else exc!r}")
                continue
            assert best is not None
            tuning.candidates.append(best)
            if meets(best, recall_target):
                built[best] = index
    progress(f"tuning: timing {len(built)} settings that keep ≥ {recall_target:.0%} (95% lower bound) beside exact "
             "search")
    searches: dict[Any, Callable[[np.ndarray], object]] = {"exact": lambda q: exact_index.search(q, K)}
    for candidate, funnel in built.items():
        searches[candidate] = _searcher(funnel, candidate.shortlist)
    times = timed(searches, queries)
    tuning.exact = {**times["exact"], "index_bytes": round(exact_index.index_bytes(), 2)}
    tuning.candidates = [c if c not in built else Candidate(**{**asdict(c), **times[c]}) for c in tuning.candidates]
    tuning.chosen, tuning.reason = choose(tuning)
    return tuning


def _searcher(index: Any, shortlist: int) -> Callable[[np.ndarray], object]:
    return lambda q: index.search(q, K, shortlist=shortlist)


def choose(tuning: Tuning) -> tuple[Candidate | None, str]:
    """Among the timed candidates that meet the target, are fast enough and within the latency
    bound: the fastest within the memory budget (the least memory among those within
    :data:`NEAR_FASTEST` of it), else the least memory; ``None`` (exact search) with the reason
    when none qualifies (the module's docstring says why)."""
    exact_ms = tuning.exact["p50_ms"]
    timed_ones = [c for c in tuning.candidates if c.p50_ms is not None]
    if not timed_ones:
        return None, (f"no setting finds {tuning.recall_target:.0%} of the exact top {K} (at the 95% lower bound over "
                      f"the {len(tuning.probes.vectors)} probe queries) with a shortlist of up to "
                      f"{max(c.shortlist for c in tuning.candidates) if tuning.candidates else 0}: exact search")
    fast = [c for c in timed_ones if c.p50_ms is not None and c.p50_ms <= FASTER_THAN_EXACT * exact_ms]
    if not fast:
        return None, (f"every setting that finds {tuning.recall_target:.0%} of the exact top {K} is slower than "
                      f"{FASTER_THAN_EXACT:.0%} of exact search one query at a time ({exact_ms:.3f} ms) on "
                      f"{tuning.corpus:,} documents: at this size exact search is the answer")
    bounded = [c for c in fast if tuning.latency_ms is None or (c.p50_ms or 0) <= tuning.latency_ms]
    if not bounded:
        return None, f"no setting that meets the recall target answers within --latency-ms {tuning.latency_ms}"
    keeping = (f"keeping ≥ {tuning.recall_target:.0%} of the exact top {K} in at most {FASTER_THAN_EXACT:.0%} of exact "
               "search's time one query at a time")
    within = [c for c in bounded if c.index_bytes <= tuning.memory_bytes]
    if within:
        fastest = min(c.p50_ms or 0.0 for c in within)
        near = [c for c in within if (c.p50_ms or 0.0) <= NEAR_FASTEST * fastest]
        chosen = min(near, key=lambda c: (c.index_bytes, c.p50_ms or 0.0))
        return chosen, (f"the fastest one query at a time within {tuning.memory_bytes:g} bytes per vector in memory "
                        f"(--memory; the least memory within {NEAR_FASTEST - 1:.0%} of the fastest), {keeping}")
    chosen = min(bounded, key=lambda c: (c.index_bytes, c.p50_ms or 0.0))
    over = f" (none fits --memory {tuning.memory_bytes:g} bytes per vector)" if tuning.memory_bytes > 0 else ""
    return chosen, f"the least memory{over}, {keeping}"


def measure_only(unit: np.ndarray, probes: Probes, index: Any, *, make_backend: Callable[[str], Any], exact: str,
                 dim: int, name: str, store: str, shortlist: int | None) -> Tuning:
    """An explicit setting (``--dim``, ``--index``…): its recall and times on the corpus, recorded
    beside exact search's, without choosing."""
    from .index import FunnelIndex

    queries = probes.vectors
    ids = index.search(queries, K, shortlist=shortlist).ids
    top = exact_top(unit, queries)
    given = measured(index, ids, top, queries, unit, dim=dim, name=name, store=store, shortlist=shortlist or K)
    exact_index = FunnelIndex.over(unit, make_backend(exact), unit.shape[1])
    times = timed({"exact": lambda q: exact_index.search(q, K),
                   "given": lambda q: index.search(q, K, shortlist=shortlist)}, queries)
    candidate = Candidate(**{**asdict(given), **times["given"]})
    reference = {**times["exact"], "index_bytes": round(exact_index.index_bytes(), 2)}
    return Tuning(1.0, None, probes, len(unit), reference, [candidate], candidate,
                  "given on the command line (measured, not chosen)", explicit=True)


def read_probe_file(path: Path) -> list[str]:
    """``--probe``: one query per line (:func:`~.searcher.query_line`)."""
    from .searcher import query_line

    if not path.is_file():
        raise UserError(f"--probe {path}: no such file; give a file of your own queries, one per line.")
    lines = path.read_text(encoding="utf-8").splitlines()
    texts = [q[1] for n, line in enumerate(lines, 1) if (q := query_line(line, f"--probe {path}, line {n}"))]
    if not texts:
        raise UserError(f"--probe {path}: no queries in it; give one query per line.")
    return texts


def make_probes(folder: Path, unit: np.ndarray, embed: Callable[[list[str]], np.ndarray] | None,
                probe_file: Path | None, *, run_queries: list[str] | None = None, run: Path | None = None,
                seed: int = 0) -> Probes:
    """The probe queries: ``--probe``'s; else, when the model is a run's, a seeded sample of
    that run's validation queries (``run_queries``); else the openings of a seeded sample of the
    documents (the index folder's text store), embedded as queries; else, with nothing to embed
    text, the sampled documents' own vectors."""
    from ..evaluation.encode import normalise
    from .folder import TextStore

    if probe_file is not None:
        if embed is None:
            raise UserError(f"--probe {probe_file}: the model that embeds the queries is not at hand (the shards' "
                            "model is not a local folder here); name it: 'mrl-run index MODEL EMBEDDINGS -o ...'.")
        texts = read_probe_file(probe_file)
        return Probes(normalise(embed(texts)), "file", f"{len(texts)} queries of {probe_file}")
    if run_queries and embed is not None:
        picked = run_queries
        if len(run_queries) > PROBES:
            rows = np.sort(np.random.default_rng(seed).choice(len(run_queries), size=PROBES, replace=False))
            picked = [run_queries[int(r)] for r in rows]
        return Probes(normalise(embed(picked)), "validation queries",
                      f"{len(picked)} of the {len(run_queries)} validation queries of the run {run} (text no fitted "
                      "part of it saw; --probe FILE tunes with your own)")
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(unit), size=min(PROBES, len(unit)), replace=False))
    store = TextStore(folder)
    if embed is not None and store.path.is_file():
        openings = [" ".join(d["text"].split()[:PSEUDO_WORDS]) for d in store.get([int(r) for r in rows])]
        return Probes(normalise(embed(openings)), "pseudo-queries",
                      f"the first {PSEUDO_WORDS} words of {len(rows)} documents of the corpus, embedded as queries "
                      "(no --probe file: real queries may differ)")
    return Probes(np.asarray(unit[rows], dtype=np.float32), "documents",
                  f"{len(rows)} documents' own vectors (no model or texts at hand to embed queries)")


def summary(record: dict[str, Any]) -> str:
    """The sentence ``mrl-run index`` prints about its tuning."""
    probe, exact = record["probe"], record["exact"]
    chosen = next((c for c in record["candidates"] if c["label"] == record["chosen"]), None)
    head = ("measured on this corpus" if record.get("explicit") else "tuned on this corpus") + \
        f" ({probe['queries']} probe queries: {probe['source']}; one thread)"
    if chosen is None:
        return f"{head}: exact search, because {record['reason']}."
    speed = exact["p50_ms"] / chosen["p50_ms"]
    than = f"{speed:.1f}× faster" if speed >= 1 else f"{1 / speed:.1f}× slower"
    listed = "" if record.get("explicit") else \
        f"; {len(record['candidates'])} settings measured ('mrl-run search INDEX --explain' lists them)"
    low = chosen.get("recall_low")
    bound = "" if low is None else f" (at least {low:.1%} at 95% confidence)"
    return (f"{head}: {chosen['label']} finds {chosen['recall']:.1%}{bound} of the exact top {record['k']}, "
            f"{chosen['index_bytes']:,.0f} bytes per vector in memory, p50 {chosen['p50_ms']:.3f} ms and p95 "
            f"{chosen['p95_ms']:.3f} ms one query at a time ({than} than exact search's {exact['p50_ms']:.3f} ms), "
            f"{chosen['batch_ms']:.4f} ms a query batched (exact: {exact['batch_ms']:.4f} ms){listed}.")


def explain(record: dict[str, Any]) -> str:
    """Every setting tuning measured, as a table (``mrl-run search --explain``)."""
    exact = record["exact"]
    lines = [summary(record), "", f"{'setting':<44} {'recall@10':>9} {'≥ (95%)':>8} {'bytes/vec':>9} {'p50 ms':>8} "
             f"{'p95 ms':>8} {'batch ms':>9}", f"{'  exact (flat, full width)':<44} {1:>9.3f} {1:>8.3f} "
             f"{exact.get('index_bytes', 0):>9,.0f} {exact['p50_ms']:>8.3f} "
             f"{exact['p95_ms']:>8.3f} {exact['batch_ms']:>9.4f}"]
    for c in sorted(record["candidates"], key=lambda c: (c["index_bytes"], -c["recall"])):
        mark = "◆ " if c["label"] == record["chosen"] else "  "
        times = (f"{c['p50_ms']:>8.3f} {c['p95_ms']:>8.3f} {c['batch_ms']:>9.4f}" if c["p50_ms"] is not None
                 else f"{'(below the recall target: not timed)':>27}")
        low = "" if c.get("recall_low") is None else f"{c['recall_low']:.3f}"
        lines.append(f"{mark}{c['label']:<42} {c['recall']:>9.3f} {low:>8} {c['index_bytes']:>9,.0f} {times}")
    lines.append(f"\nrecall target {record['recall_target']:.0%} of the exact top {record['k']}, met by the one-sided "
                 f"95% lower bound over the probe queries (≥ (95%)); probe: {record['probe']['detail']}.")
    return "\n".join(lines)
