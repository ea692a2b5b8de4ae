"""The embed of ``mrl-run embed`` (:mod:`.embed` parses and checks the command): a corpus of any
size, embedded once, into shards (:mod:`.embeddings`).

Two passes, so that every executor writes the same files:

1. **Read** (this process, streaming): every row of every file once, checked as ``mrl-run index``
   checks it (encoding, columns, empty texts, texts far longer than the model reads), cut into
   shards by corpus row; this part's shards have their texts written (``shard-N.jsonl``).
   Texts (and ids, with ``--id-column``) are kept as 16-byte digests with the row number, 24
   bytes a document (40 with ids), so repeated ids are refused and repeated texts counted before
   anything is encoded, in memory that grows by those bytes and not by the texts.
2. **Embed** (the executor): shard texts in, vectors out; this process writes each shard's
   vectors and its record as soon as it is done. A kill loses at most the shards in flight;
   ``--resume`` redoes exactly the shards without a record that matches their files.

The last part to finish (a single run is part 0 of 1) writes ``manifest.json``. Memory is
bounded by a shard (its texts, then its vectors), never by the corpus.
"""

from __future__ import annotations

import array
import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..data.corpora import Corpus
from ..data.corpus import EXAMPLES, Found
from ..errors import UserError
from .folder import FORMAT, VERSION, EmbeddingsDir, json_bytes, npy_bytes, plan_difference, sha256_file, write_atomic

if TYPE_CHECKING:
    from ..components import Executor
    from ..models import ResolvedModel
    from .job import EmbedDtype, EmbedJob

logger = logging.getLogger("mrl_plugins")


@dataclass
class Block:
    """What the read pass learnt of one shard of this part."""

    number: int
    first_row: int
    mine: bool
    """This part's shard (read and written), or another part's (read for its digests only)."""
    done: bool = False
    """Already embedded by an earlier run: its record matches the texts just read."""
    rows_read: int = 0
    rows: int = 0
    lines: list[bytes] = field(default_factory=list)
    empty: Found = field(default_factory=Found)
    cut: Found = field(default_factory=Found)
    texts_sha256: str = ""


@dataclass
class Digests:
    """16-byte digests of every document's text (and id), with its corpus row: the memory the read
    pass keeps of a corpus (24 bytes a document, 40 with ids)."""

    ids: bytearray = field(default_factory=bytearray)
    texts: bytearray = field(default_factory=bytearray)
    rows: array.array = field(default_factory=lambda: array.array("q"))

    def add(self, row: int, doc_id: str | None, text: str) -> None:
        self.rows.append(row)
        self.texts += hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()
        if doc_id is not None:
            self.ids += hashlib.blake2b(doc_id.encode("utf-8"), digest_size=16).digest()

    def repeats(self, which: str) -> list[tuple[int, int]]:
        """``(row, earlier row)`` of every document whose text (or id) an earlier one had."""
        data = np.frombuffer(bytes(getattr(self, which)), dtype="V16")
        if len(data) < 2:
            return []
        order = np.argsort(data, kind="stable")
        ordered = data[order]
        same = ordered[1:] == ordered[:-1]
        if not same.any():
            return []
        first = order.copy()
        for i in np.flatnonzero(same):  # runs of equal digests: each later one points at the run's first
            first[i + 1] = first[i]
        rows = np.frombuffer(self.rows, dtype=np.int64)
        later = order[1:][same]
        return sorted((int(rows[a]), int(rows[first[i + 1]])) for a, i in zip(later, np.flatnonzero(same)))


def where_of(row: int, corpus: Corpus) -> str:
    """A corpus row in words: "row 7", or "part-2.jsonl, row 7" for a corpus of several files."""
    import bisect

    starts = corpus.starts
    at = max(0, bisect.bisect_right(starts, row) - 1)
    if len(corpus.files) == 1:
        return f"row {row + 1}"
    return f"{corpus.label(corpus.files[at])}, row {row - starts[at] + 1}"


@dataclass(frozen=True)
class EmbedRequest:
    """One embed of a corpus, every choice resolved from the command line."""

    model: ResolvedModel
    run: Path | None
    """The run whose model embeds, when it is one: ``mrl-run index`` takes its serving choice."""
    corpus: str
    """The corpus as named: a file, a folder of files (one format) or a quoted pattern."""
    output: Path
    executor: Executor = field(repr=False)
    part: int = 0
    parts: int = 1
    """This process embeds part ``part`` of ``parts`` (``--shard I/N``); the parts together equal one run."""
    shard_rows: int = 50_000
    dtype: EmbedDtype = "float32"
    batch_size: int = 256
    device: str = "auto"
    resume: bool = False
    overwrite: bool = False
    text_column: str = "text"
    id_column: str | None = None
    format: str | None = None
    encoding: str = "utf-8"


@dataclass
class Embedder:
    request: EmbedRequest
    corpus: Corpus

    def __post_init__(self) -> None:
        self.folder = EmbeddingsDir(self.request.output)
        self.progress = logger.getEffectiveLevel() <= logging.INFO

    def run(self) -> int:
        from ..models import full_width, load_model, pick_device
        from .stamp import ModelStamp

        # a killed writer's half-written files (we hold the lock)
        self.folder.clean_temporaries(self.request.part, self.request.parts)
        sources = self.sources()
        device = pick_device(self.request.device)
        model = load_model(self.request.model, device=device)
        full = full_width(model)
        max_seq = int(getattr(model, "max_seq_length", None) or 512)
        from ..data.corpus import CHARS_PER_TOKEN

        self.corpus.max_chars = max_seq * CHARS_PER_TOKEN
        stamp = ModelStamp.of(model, self.request.model.requested)
        plan = self.plan(stamp, full, max_seq, sources)
        old = self.folder.read_plan()
        if old is not None:
            why = plan_difference(old, plan)
            if why is not None:
                raise UserError(f"-o {self.request.output}: the embed there is not this one: {why}. Nothing was "
                                "changed. Start again with --overwrite (or choose another -o), or resume with the "
                                "corpus, model and options it was started with.")
        else:
            write_atomic(self.folder.plan_file, json_bytes(plan))
        from .job import EmbedJob

        job = EmbedJob(self.request.model.location, self.request.model.requested, self.request.model.is_local, full,
                       dtype=self.request.dtype, batch_size=self.request.batch_size, device=device)
        blocks, digests, total = self.read()
        repeated_ids = digests.repeats("ids") if self.corpus.id_column else []
        if repeated_ids:
            row, earlier = repeated_ids[0]
            raise UserError(f"{self.corpus.name}: {where_of(earlier, self.corpus)} and "
                            f"{where_of(row, self.corpus)} have the same {self.corpus.id_column} "
                            f"({len(repeated_ids)} repeated id(s) in all); ids must be unique. Fix the data, or leave "
                            "out --id-column to number the documents. Nothing was embedded.")
        self.check_sources(sources)
        pending = [b for b in blocks if not b.done]
        done_before = len(blocks) - len(pending)
        if self.request.parts > 1 and not pending:
            print(f"nothing left for part {self.request.part}/{self.request.parts} of {self.request.output}: "
                  + (f"its {done_before} shard(s) are done." if done_before else "the corpus has no shard for it."))
        if done_before and pending:
            logger.info("resuming: %d of this part's %d shard(s) are done, %d to embed", done_before, len(blocks),
                        len(pending))
        job.remember(model)  # an in-process executor encodes with it rather than loading it again
        self.embed(job, pending)
        count = -(-total // self.request.shard_rows) if total else 0
        return self.finish(plan, count, digests)

    # -- sources and plan --------------------------------------------------------------------------
    def sources(self) -> list[dict[str, Any]]:
        """Every file's name, size and SHA-256, as the embed starts (sizes checked again after the
        read pass: a file changed while it was read is refused).

        A pass of its own, before the read pass, on purpose: the plan (and so the refusal of a
        changed corpus on ``--resume``) is settled before any shard is touched, and the readers
        (pyarrow for Parquet, the csv module) need not be wrapped to hash what they read. Hashing
        runs at disk speed (hundreds of MB/s); encoding, even on a GPU, at tens of MB/s of text,
        so the extra read costs a few percent of an embed at most."""
        from tqdm.auto import tqdm

        out = []
        for path in tqdm(self.corpus.files, desc="checksums", unit="file", disable=not self.progress
                         or len(self.corpus.files) < 2):
            out.append({"name": self.corpus.label(path), "bytes": path.stat().st_size, "sha256": sha256_file(path)})
        return out

    def check_sources(self, sources: list[dict[str, Any]]) -> None:
        for path, source in zip(self.corpus.files, sources):
            if path.stat().st_size != source["bytes"]:
                raise UserError(f"{path} changed while it was read ({source['bytes']:,} bytes at the start, "
                                f"{path.stat().st_size:,} now); nothing more was embedded. Embed a corpus that is not "
                                "being written, and run the command again with --resume.")

    def plan(self, stamp: Any, full: int, max_seq: int, sources: list[dict[str, Any]]) -> dict[str, Any]:
        from .. import __version__

        return {
            "format": FORMAT, "version": VERSION, "created_by": f"mrl-plugins {__version__}",
            "model": {"name": stamp.name, "probe": list(stamp.probe)},
            "run": str(self.request.run.resolve()) if self.request.run is not None else None,
            "full_dim": full, "dtype": self.request.dtype,
            "normalised": True, "max_seq_length": max_seq, "shard_rows": self.request.shard_rows,
            "corpus": {"root": str(self.corpus.root.resolve()), "format": self.corpus.format,
                       "text_column": self.corpus.text_column, "id_column": self.corpus.id_column,
                       "encoding": self.corpus.encoding, "max_chars": self.corpus.max_chars, "files": sources},
        }

    # -- pass 1: read ------------------------------------------------------------------------------
    def read(self) -> tuple[list[Block], Digests, int]:
        """Every row once: this part's shards get their texts written (unless a done shard already
        has exactly these), every document its digests. Returns this part's blocks, the digests and
        the corpus's row count."""
        from tqdm.auto import tqdm

        size = self.request.shard_rows
        blocks: list[Block] = []
        digests = Digests()
        current: Block | None = None
        # no total: counting a corpus's rows first would read it once more (the embedding bar has its ETA)
        bar = tqdm(unit="row", desc="reading", disable=not self.progress)
        for record in self.corpus.records():
            number = record.row // size
            if current is None or number != current.number:
                if current is not None:
                    self.settle(current)
                    bar.update(current.rows_read)
                current = Block(number, number * size, mine=number % self.request.parts == self.request.part)
                if current.mine:
                    blocks.append(current)
            current.rows_read += 1
            if record.text is None:
                current.empty.add(record.where)
                continue
            if record.cut:
                current.cut.add(record.where)
            current.rows += 1
            digests.add(record.row, record.id if self.corpus.id_column else None, record.text)
            if current.mine:
                current.lines.append((json.dumps({"id": record.id, "text": record.text}, ensure_ascii=False)
                                      + "\n").encode("utf-8"))
        if current is not None:
            self.settle(current)
            bar.update(current.rows_read)
        bar.close()
        if not digests.rows:
            raise UserError(f"{self.corpus.name}: every document of the corpus is empty; nothing to embed.")
        return blocks, digests, self.corpus.rows

    def settle(self, block: Block) -> None:
        """A shard's rows are all read: its texts are written, unless a done shard has them already."""
        if not block.mine:
            return
        data = b"".join(block.lines)
        block.texts_sha256 = hashlib.sha256(data).hexdigest()
        record = self.folder.record(block.number)
        if record is not None and record.get("texts_sha256") == block.texts_sha256:
            block.done = True
        else:
            self.folder.record_file(block.number).unlink(missing_ok=True)
            self.folder.vectors(block.number).unlink(missing_ok=True)
            write_atomic(self.folder.texts(block.number), data)
        block.lines = []

    # -- pass 2: embed -----------------------------------------------------------------------------
    def embed(self, job: EmbedJob, blocks: list[Block]) -> None:
        from tqdm.auto import tqdm

        from .job import ShardTask

        if not blocks:
            return
        tasks = [ShardTask(b.number, self.folder.texts(b.number), b.rows) for b in blocks]
        by_number = {b.number: b for b in blocks}
        total = sum(t.rows for t in tasks)
        logger.info("embedding %s documents in %d shard(s) with %s", f"{total:,}", len(tasks),
                    self.request.executor.describe())
        with tqdm(total=total, unit="doc", desc="embedding", disable=not self.progress, smoothing=0.1) as bar:
            for task, result in self.request.executor.embed(job, tasks, bar.update):
                block = by_number.pop(task.index)
                vectors = np.asarray(result.vectors)
                if vectors.shape != (task.rows, job.full_dim) or vectors.dtype != np.dtype(job.dtype):
                    raise RuntimeError(f"executor '{self.request.executor.name}' returned {vectors.dtype} "
                                       f"{vectors.shape} for "
                                       f"shard {task.index}; expected {job.dtype} ({task.rows}, {job.full_dim})")
                data = npy_bytes(vectors)
                write_atomic(self.folder.vectors(task.index), data)
                over = np.flatnonzero(np.asarray(result.over_length))
                record = {
                    "shard": task.index, "first_row": block.first_row, "rows_read": block.rows_read,
                    "rows": task.rows, "texts_sha256": block.texts_sha256,
                    "vectors_sha256": hashlib.sha256(data).hexdigest(),
                    "empty": block.empty.as_dict(), "cut": block.cut.as_dict(),
                    "over_length": {"count": len(over), "examples": self.ids_of(task, over[:EXAMPLES])},
                }
                write_atomic(self.folder.record_file(task.index), json_bytes(record))
        if by_number:
            raise RuntimeError(f"executor '{self.request.executor.name}' returned without shards {sorted(by_number)}")

    def ids_of(self, task: Any, rows: np.ndarray) -> list[str]:
        """The ids of a few rows of a shard, read from its texts ("id 17")."""
        wanted, out = {int(r) for r in rows}, []
        if wanted:
            with open(task.texts, "rb") as fh:
                for i, line in enumerate(fh):
                    if i in wanted:
                        out.append(f"id {json.loads(line)['id']}")
                    if i >= max(wanted):
                        break
        return out

    # -- the manifest --------------------------------------------------------------------------------
    def finish(self, plan: dict[str, Any], count: int, digests: Digests) -> int:
        from ..outputs.locks import FolderLock

        # Records are trusted here, not re-hashed: each was written after its files, by this run or
        # by a part or run that verified the texts it kept (settle). Hashing every shard again at
        # the end would read the whole folder once more (a billion 384-dim vectors: 1.5 TB).
        missing = [n for n in range(count) if self.folder.record(n, verify=False) is None]
        if missing:
            others = sorted({n % self.request.parts for n in missing})
            print(f"part {self.request.part}/{self.request.parts} of {self.request.output} is done; shards "
                  f"{_ranges(missing)} are another part's "
                  f"(--shard {', '.join(f'{o}/{self.request.parts}' for o in others)}): the last part to finish "
                  "writes the manifest.")
            return 0
        lock = FolderLock(self.request.output.with_name(f"{self.request.output.name}.manifest"), "writing the manifest")
        try:
            lock.acquire("another part is writing the manifest ({holder})")
        except UserError:
            print(f"part {self.request.part}/{self.request.parts} of {self.request.output} is done; another part is "
                  "writing the manifest.")
            return 0
        with lock:
            records = [self.folder.record(n, verify=False) for n in range(count)]
            if any(r is None for r in records):
                return 0
            repeats = digests.repeats("texts")
            totals = {key: _merged([r[key] for r in records if r]) for key in ("empty", "cut", "over_length")}
            totals["duplicates"] = {"count": len(repeats), "examples": [
                f"{where_of(row, self.corpus)} repeats {where_of(earlier, self.corpus)}"
                for row, earlier in repeats[:EXAMPLES]]}
            manifest = {
                **plan,
                "count": sum(r["rows"] for r in records if r), "rows_read": sum(r["rows_read"] for r in records if r),
                "shards": [{k: r[k] for k in ("shard", "first_row", "rows", "texts_sha256", "vectors_sha256")}
                           for r in records if r],
                "checks": totals,
            }
            old = self.folder.read_plan()  # a manifest is the plan it was made for, never a newer one's
            if old is not None and plan_difference(old, plan) is None:
                manifest["created_by"] = old["created_by"]
            write_atomic(self.folder.manifest_file, json_bytes(manifest))
        self.report(manifest)
        return 0

    def report(self, manifest: dict[str, Any]) -> None:
        checks = manifest["checks"]
        words = {
            "empty": "empty rows skipped",
            "cut": f"documents cut to {manifest['corpus']['max_chars']:,} characters before tokenising",
            "over_length": f"documents longer than the model reads ({manifest['max_seq_length']} tokens: the rest "
                           "is not in their vectors)",
            "duplicates": "documents whose text an earlier one has (embedded again; dedupe the corpus to save the "
                          "work)",
        }
        for key, text in words.items():
            found = checks[key]
            if found["count"]:
                logger.warning("%s: %s %s (%s%s)", self.corpus.name, f"{found['count']:,}", text,
                               ", ".join(found["examples"]), ", …" if found["count"] > len(found["examples"]) else "")
        print(f"embedded {manifest['count']:,} documents of {self.corpus.name} in {len(manifest['shards'])} shard(s) "
              f"in {self.request.output}: {manifest['full_dim']} dims, {manifest['dtype']}, unit length. Index them "
              "with 'mrl-run "
              f"index {self.request.output} -o INDEX'.")


def _merged(found: list[dict[str, Any]]) -> dict[str, Any]:
    examples: list[str] = []
    for f in found:
        examples.extend(f["examples"][: EXAMPLES - len(examples)])
    return {"count": sum(f["count"] for f in found), "examples": examples}


def _ranges(numbers: list[int]) -> str:
    shown = ", ".join(str(n) for n in numbers[:8])
    return shown + (f", … ({len(numbers)} in all)" if len(numbers) > 8 else "")
