"""An index folder on disk: its manifest, the checks of its files, and its text store.

A saved index is a folder: ``manifest.json`` (format version, model, dimensions, backend,
count), the backend's ``shortlist.index``, ``vectors.npy`` (memory-mapped when loaded, so a large
index keeps only its shortlist in RAM; ``store_ranges.npy`` beside it for an ``int8`` store) and,
when built from texts, ``texts.jsonl`` with an ``offsets.npy`` to read any one line. An index
with an ``int8`` store is format version 2 (older readers say "upgrade"); others stay version 1.
A folder that does not match its manifest is one clear error that says to rebuild, found before
any model or torch loads. :class:`~.index.FunnelIndex` reads and writes the arrays.

An index held by an engine (a database: :class:`~mrl_plugins.components.Engine`) says
``"engine": true`` and is format version 3: its folder holds the manifest (whose backend
parameters say where the engine keeps the vectors) and the text store, nothing else.
"""

from __future__ import annotations

import array
import contextlib
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from ..embed.folder import npy_header
from ..errors import UserError
from ..indexes import FORMAT, VERSION, Manifest, StoreDtype  # noqa: F401 (re-exported: the folder's format)


def read_manifest(folder: Path) -> Manifest:
    path = folder / "manifest.json"
    rebuild = f"rebuild the index with 'mrl-run index MODEL CORPUS -o {folder} --overwrite'"
    if not folder.is_dir():
        raise UserError(f"{folder}: no such folder; build an index with 'mrl-run index MODEL CORPUS -o {folder}'.")
    try:
        m = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{folder}: not an index (no manifest.json); build one with 'mrl-run index'.") from None
    except (OSError, ValueError) as exc:
        raise UserError(f"{path} cannot be read ({exc}); {rebuild}.") from None
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise UserError(f"{path} is not an mrl-plugins index manifest (no \"format\": \"{FORMAT}\"); {rebuild}.")
    if isinstance(m.get("version"), int) and not isinstance(m.get("version"), bool) and m["version"] > VERSION:
        raise UserError(f"{folder}: index format {m['version']} is newer than this mrl-plugins reads ({VERSION}); "
                        "upgrade.")
    try:
        manifest = Manifest.model_validate(m)
    except ValidationError as exc:
        first = exc.errors()[0]
        at = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise UserError(f"{path}: '{at}' {first['msg'].lower()} (got {first.get('input')!r:.60}); the manifest is "
                        f"damaged; {rebuild}.") from None
    if manifest.shortlist_dim > manifest.full_dim or manifest.rerank_dim > manifest.full_dim:
        raise UserError(f"{path}: shortlist_dim {manifest.shortlist_dim} and rerank_dim {manifest.rerank_dim} must not "
                        f"exceed full_dim {manifest.full_dim}; the manifest is damaged; {rebuild}.")
    return manifest


def check_index_folder(folder: Path) -> Manifest:
    """The whole index folder, checked without loading a model: the manifest (keys and types),
    the files it needs, the shape and dtype of ``vectors.npy`` and the text store's offsets.
    Returns the manifest; anything wrong is one message that says to rebuild."""
    m = read_manifest(folder)
    rebuild = f"rebuild the index with 'mrl-run index MODEL CORPUS -o {folder} --overwrite'"
    arrays = [] if m.engine else ["shortlist.index", "vectors.npy",
                                     *(["store_ranges.npy"] if m.store_dtype == "int8" else [])]
    needed = [*arrays, *(["texts.jsonl", "offsets.npy"] if m.texts else [])]
    missing = [name for name in needed if not (folder / name).is_file()]
    if missing:
        raise UserError(f"{folder}: {', '.join(missing)} missing (the manifest needs them); the folder is incomplete; "
                        f"{rebuild}.")
    if m.engine:  # the engine checks its own side when the index opens
        if m.texts:
            TextStore(folder).check(m.count, rebuild)
        return m
    shape, dtype = npy_header(folder / "vectors.npy", rebuild)
    if shape != (m.count, m.full_dim) or dtype != np.dtype(m.store_dtype):
        raise UserError(f"{folder}/vectors.npy holds {dtype} {shape}, the manifest says {m.store_dtype} "
                        f"({m.count}, {m.full_dim}); the folder is damaged; {rebuild}.")
    if m.texts:
        TextStore(folder).check(m.count, rebuild)
    return m


class NpyAppender:
    """A ``.npy`` file written a block of rows at a time, never held in memory: the header is
    written last (a fixed 128 bytes, so the data never moves), and until then the rows written so
    far are readable memory-mapped. How an index keeps its full vectors for a corpus larger than
    memory."""

    HEADER = 128

    def __init__(self, path: Path, dtype: str, width: int):
        self.path, self.dtype, self.width, self.rows = path, np.dtype(dtype), width, 0
        self._fh: Any = open(path, "w+b")  # noqa: SIM115 (held open until finish)
        self._fh.write(b"\0" * self.HEADER)
        self._view: np.ndarray | None = None

    def append(self, rows: np.ndarray) -> None:
        rows = np.ascontiguousarray(rows, dtype=self.dtype)
        assert rows.ndim == 2 and rows.shape[1] == self.width, rows.shape
        self._fh.write(rows.tobytes())
        self.rows += len(rows)
        self._view = None

    def array(self) -> np.ndarray:
        """The rows written so far (memory-mapped)."""
        if self._view is None:
            self._fh.flush()
            self._view = (np.memmap(self.path, self.dtype, "r", offset=self.HEADER, shape=(self.rows, self.width))
                          if self.rows else np.zeros((0, self.width), self.dtype))
        return self._view

    def finish(self) -> np.ndarray:
        """Write the header; the file is an ordinary ``.npy`` (returned memory-mapped)."""
        header = repr({"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False,
                       "shape": (self.rows, self.width)})
        body = header.encode("latin1").ljust(self.HEADER - 10 - 1) + b"\n"
        self._fh.seek(0)
        self._fh.write(b"\x93NUMPY\x01\x00" + len(body).to_bytes(2, "little") + body)
        self._fh.close()
        self._view = None
        return np.load(self.path, mmap_mode="r")

    def discard(self) -> None:
        if not self._fh.closed:
            self._fh.close()


# -- corpora: texts in, a line by id out ---------------------------------------------------------
class TextStore:
    """The corpus texts of an index as JSON lines, with offsets to read any one line."""

    def __init__(self, folder: Path):
        self.path, self.offsets_path = folder / "texts.jsonl", folder / "offsets.npy"
        self._offsets: np.ndarray | None = None

    def write(self, records: Iterable[tuple[str, str]]) -> Iterator[tuple[str, str]]:
        """Write ``(id, text)`` records as they pass through (yields them on)."""
        offsets = array.array("q")  # 8 bytes a document, not a Python int's 32
        with open(self.path, "w", encoding="utf-8") as fh:
            for doc_id, text in records:
                offsets.append(fh.tell())
                fh.write(json.dumps({"id": doc_id, "text": text}, ensure_ascii=False) + "\n")
                yield doc_id, text
        np.save(self.offsets_path, np.frombuffer(offsets, dtype=np.int64))

    @contextlib.contextmanager
    def appender(self) -> Iterator[Callable[[bytes], None]]:
        """``put(line)`` for lines already in the store's format (``mrl-run embed``'s shard
        texts); the offsets are saved when the block ends without an error."""
        offsets = array.array("q")
        with open(self.path, "wb") as fh:
            def put(line: bytes) -> None:
                offsets.append(fh.tell())
                fh.write(line)

            yield put
        np.save(self.offsets_path, np.frombuffer(offsets, dtype=np.int64))

    def check(self, count: int, rebuild: str) -> None:
        """Offsets for ``count`` documents, starting at 0, increasing, inside ``texts.jsonl``."""
        shape, dtype = npy_header(self.offsets_path, rebuild)
        size = self.path.stat().st_size
        if shape != (count,) or dtype.kind not in "iu":
            raise UserError(f"{self.offsets_path} holds {dtype} {shape}, expected {count} integer offsets; {rebuild}.")
        offsets = np.load(self.offsets_path, mmap_mode="r")
        if count and (offsets[0] != 0 or offsets[-1] >= size or np.any(np.diff(offsets) <= 0)):
            raise UserError(f"{self.offsets_path} does not match texts.jsonl ({size:,} bytes); the text store is "
                            f"damaged; {rebuild}.")

    def get(self, rows: Sequence[int]) -> list[dict[str, str]]:
        if self._offsets is None:
            self._offsets = np.load(self.offsets_path, mmap_mode="r")
        out = []
        with open(self.path, "rb") as fh:
            for row in rows:
                fh.seek(int(self._offsets[row]))
                try:
                    doc = json.loads(fh.readline())
                    out.append({"id": str(doc["id"]), "text": str(doc["text"])})
                except (ValueError, KeyError, TypeError):
                    raise UserError(f"{self.path}: document {row} cannot be read (the file was changed after the index "
                                    "was built); rebuild the index with 'mrl-run index'.") from None
        return out
