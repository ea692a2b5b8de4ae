"""An embeddings folder: a corpus embedded once, in shards, read back by ``mrl-run index``.

The layout (one owner of its paths: :class:`EmbeddingsDir`)::

    EMBEDDINGS_DIR/
      plan.json            what is being embedded: model stamp, width, dtype, the reading options,
                           the source files with their sizes and SHA-256; written first
      shard-00000.jsonl    the shard's documents as read and checked: {"id", "text"} per line
      shard-00000.npy      their vectors, (rows, full_dim), unit length, float32 or float16
      shard-00000.json     the shard's record, written last: rows, the SHA-256 of both files, what
                           the checks found in it; a shard without one, or whose files do not
                           match it, is not done (``--resume`` redoes it)
      manifest.json        written once every shard is recorded: the plan, every shard, the
                           totals and the quality checks. A folder without it is unfinished.

Why ``.npy`` + JSON lines and not Parquet: a shard's vectors are memory-mapped by ``mrl-run
index`` with no decoding and no copy (the index's own store is ``.npy`` too), the bytes of a shard
depend only on its rows (so a resumed or split embed is byte-for-byte the uninterrupted one, which
a test compares), and the texts are the format the index's text store already keeps. Every other
tool reads them with ``numpy.load`` and any JSON reader; ``pyarrow`` turns a shard into Parquet in
two lines when a warehouse wants it.

Shards are cut by corpus row: shard ``b`` holds the documents of rows ``b·S … (b+1)·S - 1`` (``S``
= ``shard_rows``, empty rows skipped), so which rows a shard holds never depends on how the work
was split: ``--shard i/N`` embeds the shards ``b`` with ``b mod N = i``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError
from ..outputs.digests import sha256_file

FORMAT = "mrl-plugins-embeddings"
VERSION = 1
PLAN_KEYS_COMPARED = ("format", "version", "model", "full_dim", "dtype", "normalised", "max_seq_length",
                      "shard_rows", "corpus")
"""What a resumed embed or another part must share with the plan already in the folder (not
``created_by``, and of the corpus not its ``root``: a part on another machine mounts it elsewhere)."""


def write_atomic(path: Path, data: bytes) -> None:
    """``data`` at ``path``, all or nothing: a temporary name beside it, flushed, then renamed."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def npy_bytes(array: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def json_bytes(value: Any) -> bytes:
    return (json.dumps(value, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


@dataclass(frozen=True)
class EmbeddingsDir:
    """The paths of an embeddings folder, and reading it back."""

    path: Path

    @property
    def plan_file(self) -> Path:
        return self.path / "plan.json"

    @property
    def manifest_file(self) -> Path:
        return self.path / "manifest.json"

    def texts(self, shard: int) -> Path:
        return self.path / f"shard-{shard:05d}.jsonl"

    def vectors(self, shard: int) -> Path:
        return self.path / f"shard-{shard:05d}.npy"

    def record_file(self, shard: int) -> Path:
        return self.path / f"shard-{shard:05d}.json"

    @staticmethod
    def holds_embeddings(path: Path) -> bool:
        """Whether ``path`` is an embeddings folder (finished or not)."""
        try:
            plan = json.loads((path / "plan.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return isinstance(plan, dict) and plan.get("format") == FORMAT

    def read_plan(self) -> dict[str, Any] | None:
        try:
            plan = json.loads(self.plan_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise UserError(f"{self.plan_file} cannot be read ({exc}); the folder is damaged. Embed again into a new "
                            "folder (or pass --overwrite).") from None
        return plan if isinstance(plan, dict) else None

    def record(self, shard: int, *, verify: bool = True) -> dict[str, Any] | None:
        """The shard's record if the shard is done: record there, both files there and (with
        ``verify``) their SHA-256 matching it; without, their sizes are not read either, only that
        they exist."""
        try:
            record = json.loads(self.record_file(shard).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(record, dict):
            return None
        for path, key in ((self.texts(shard), "texts_sha256"), (self.vectors(shard), "vectors_sha256")):
            if not path.is_file() or (verify and sha256_file(path) != record.get(key)):
                return None
        return record

    def clean_temporaries(self, part: int = 0, parts: int = 1) -> int:
        """Remove what a killed writer left half-written, of the shards of part ``part`` of
        ``parts`` only (another part may be writing its own). Returns how many."""
        removed = 0
        for tmp in self.path.glob(".shard-*.tmp-*"):
            try:
                shard = int(tmp.name.split("-")[1].split(".")[0])
            except (IndexError, ValueError):
                continue
            if shard % parts == part:
                tmp.unlink(missing_ok=True)
                removed += 1
        return removed

    # -- reading a finished folder ------------------------------------------------------------------
    def open(self) -> dict[str, Any]:
        """The manifest of a finished embeddings folder, every shard's files checked against it
        (shapes and dtypes from the ``.npy`` headers; no vector is read)."""
        redo = (f"embed the corpus again ('mrl-run embed MODEL CORPUS -o {self.path} --resume' finishes an interrupted "
                "one)")
        if not self.path.is_dir():
            raise UserError(f"{self.path}: no such folder.")
        try:
            manifest = json.loads(self.manifest_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            if self.plan_file.is_file():
                raise UserError(f"{self.path}: the embed is not finished (no manifest.json); finish it with 'mrl-run "
                                f"embed ... -o {self.path} --resume' (every --shard i/N part, when it was split)."
                                ) from None
            raise UserError(f"{self.path}: not an embeddings folder (no manifest.json).") from None
        except (OSError, ValueError) as exc:
            raise UserError(f"{self.manifest_file} cannot be read ({exc}); {redo}.") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise UserError(f"{self.manifest_file}: not an mrl-plugins embeddings manifest; {redo}.")
        if not isinstance(manifest.get("version"), int) or manifest["version"] > VERSION:
            raise UserError(f"{self.path}: embeddings format {manifest.get('version')} is newer than this mrl-plugins "
                            f"reads ({VERSION}); upgrade.")
        full, dtype = manifest.get("full_dim"), manifest.get("dtype")
        for shard in manifest.get("shards", []):
            number, rows = shard["shard"], shard["rows"]
            for path in (self.texts(number), self.vectors(number)):
                if not path.is_file():
                    raise UserError(f"{path} is missing (manifest.json lists it); the folder is incomplete; {redo}.")
            shape, found = npy_header(self.vectors(number), redo)
            if shape != (rows, full) or found != np.dtype(dtype):
                raise UserError(f"{self.vectors(number)} holds {found} {shape}, the manifest says {dtype} ({rows}, "
                                f"{full}); the folder is damaged; {redo}.")
        return manifest

    def shards(self, manifest: dict[str, Any]) -> Iterator[tuple[np.ndarray, Path]]:
        """Each shard's vectors (memory-mapped) and its texts file, in corpus order, each file's
        SHA-256 checked against the manifest first: a texts file cut or edited after the embed (its
        header and sizes say nothing of it) stops the reader before anything is built from it.
        The files are read once more for it, one shard at a time, so the reading that follows
        finds them in the page cache."""
        redo = f"embed the corpus again into a new folder (or with --overwrite) than {self.path}"
        for shard in manifest["shards"]:
            number = shard["shard"]
            for path, key in ((self.texts(number), "texts_sha256"), (self.vectors(number), "vectors_sha256")):
                if sha256_file(path) != shard.get(key):
                    raise UserError(f"{path}: its SHA-256 is not the one {self.manifest_file.name} records for it: the "
                                    f"file was changed or cut after the embed, and nothing was built from it; {redo}.")
            yield np.load(self.vectors(number), mmap_mode="r"), self.texts(number)


def plan_difference(old: dict[str, Any], new: dict[str, Any]) -> str | None:
    """Why a plan already in the folder is not this one, in words (``None``: the same embed)."""
    old_files = {f["name"]: f for f in old.get("corpus", {}).get("files", [])}
    new_files = {f["name"]: f for f in new["corpus"]["files"]}
    if old_files != new_files:
        for name in sorted(set(old_files) | set(new_files)):
            if name not in new_files:
                return f"the corpus no longer has {name}"
            if name not in old_files:
                return f"the corpus now has {name}, which it did not have"
            if old_files[name] != new_files[name]:
                was, now = old_files[name], new_files[name]
                what = (f"{was['bytes']:,} bytes then, {now['bytes']:,} now" if was["bytes"] != now["bytes"]
                        else "same size, different content (SHA-256)")
                return f"{name} changed since the shards were written ({what})"
    for key in PLAN_KEYS_COMPARED:
        a, b = old.get(key), new.get(key)
        if key == "corpus":
            a = {k: v for k, v in (a or {}).items() if k not in ("root", "files")}
            b = {k: v for k, v in (b or {}).items() if k not in ("root", "files")}
        if a != b:
            return f"'{key}' was {json.dumps(a)[:120]} and is now {json.dumps(b)[:120]}"
    return None


def npy_header(path: Path, rebuild: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of a ``.npy`` file from its header, and whether its data is all there."""
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = read(fh)
            data_start = fh.tell()
    except (OSError, ValueError, EOFError) as exc:
        raise UserError(f"{path}: not a readable .npy file ({exc}); {rebuild}.") from None
    need = int(np.prod(shape)) * dtype.itemsize
    if path.stat().st_size - data_start < need:
        raise UserError(f"{path}: cut short ({path.stat().st_size - data_start:,} of {need:,} data bytes); {rebuild}.")
    return tuple(shape), dtype
