"""The SHA-256 of a file, as every record of a written folder keeps it (an embeddings folder's
manifest, an export's ``mrl_export.json``) and every reader of such a folder checks it."""

from __future__ import annotations

import hashlib
from pathlib import Path


def sha256_file(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()
