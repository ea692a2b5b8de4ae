"""Reading a data source's tables through ``datasets``: local files by extension, Hub datasets by
name, the same code path for both, and the one message for a missing column.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import UserError

_BUILDERS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".tsv": "csv", ".parquet": "parquet"}


_COMPRESSED = (".gz", ".xz", ".bz2", ".zst")


def builder_for(path: Path) -> str | None:
    """The ``datasets`` builder for a data file, from its extension (compression ignored)."""
    suffixes = [s for s in Path(path).suffixes if s not in _COMPRESSED]
    return _BUILDERS.get(suffixes[-1]) if suffixes else None


def read_table(path: Path, *, encoding: str = "utf-8", streaming: bool = False) -> Any:
    """Read a local data file with ``datasets`` (json/csv/parquet chosen by extension)."""
    import datasets

    builder = builder_for(path)
    kwargs: dict[str, Any] = {}
    if builder == "csv":
        kwargs["encoding"] = encoding
        if ".tsv" in Path(path).suffixes:
            kwargs["sep"] = "\t"
    try:
        return datasets.load_dataset(builder, data_files=str(path), split="train", streaming=streaming, **kwargs)
    except Exception as exc:
        raise UserError(f"{path}: cannot be read as {builder}: {type(exc).__name__}: {exc}") from None


def open_dataset(
    name: str, *, subset: str | None = None, split: str = "train", data_files: str | None = None,
    base_dir: Path = Path("."), streaming: bool = False, local_hint: str = "",
) -> Any:
    """A Hub dataset, or local files in the same schema when ``data_files`` is given.

    Both go through ``datasets`` so local test files exercise the same code path. When the Hub
    cannot be reached the error says so and points at the local-files route (``local_hint``).
    """
    if data_files:
        path = base_dir / data_files
        if not path.exists():
            raise UserError(f"data_files '{data_files}' not found (looked for {path}).")
        return read_table(path, streaming=streaming)
    import datasets

    try:
        return datasets.load_dataset(name, subset, split=split, streaming=streaming)
    except Exception as exc:
        raise UserError(
            f"could not load '{name}'{f' (subset {subset!r})' if subset else ''} from the Hugging Face Hub: "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}. If this machine cannot reach "
            f"the Hub (or HF_HUB_OFFLINE is set), download the data where it can and point the recipe at local "
            f"files instead: {local_hint or 'set data_files in [data]'}."
        ) from None


def require_columns(have: Sequence[str], need: Sequence[str], where: str, example_key: str | None = None) -> None:
    """A clear error naming the missing columns and the columns that exist."""
    missing = [c for c in need if c not in have]
    if missing:
        example = f", e.g. columns = {{ {example_key} = \"{have[0]}\" }}" if example_key and have else ""
        raise UserError(
            f"{where}: missing column{'s' if len(missing) > 1 else ''} {', '.join(repr(m) for m in missing)}; "
            f"it has {', '.join(repr(c) for c in have)}. Map them in [data] columns{example}."
        )
