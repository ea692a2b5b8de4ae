"""A query encoder without torch, kept in the index folder: ``mrl-run search`` without start-up.

From the command line every ``mrl-run search`` paid the model's start-up: importing torch and
sentence-transformers and loading the model took about 6 s for well under a millisecond of
search (issue #37). ``mrl-run index`` therefore writes ``query_encoder/`` into the index folder
(unless ``--no-query-encoder``):

- ``model.onnx``: the model's own modules traced by torch's exporter at full width, L2
  normalisation inside: the graph ``mrl-run export`` makes (:func:`~mrl_plugins.export.onnx.export_onnx`),
  so there is one way the package turns a model into a graph;
- ``tokenizer.json``: the model's fast tokenizer, run by the ``tokenizers`` library alone;
- ``query_encoder.json``: what the graph needs around it (the prompts, ``max_seq_length``,
  lower-casing, the padding token, the inputs), the :class:`~mrl_plugins.embed.stamp.ModelStamp`
  of the model it came from, and how far it was from that model when checked.

It is checked at index time against the torch model on probe texts (queries and documents, with
their prompts, a text longer than the model reads among them): the largest difference of any
coordinate of the normalised vectors must be at most ``1e-4``, the export's tolerance, or the
encoder is not written and the index says so. :meth:`QueryEncoder.open` runs it with
onnxruntime and ``tokenizers``: nothing here imports torch, sentence-transformers or
transformers, and :meth:`~mrl_plugins.search.searcher.Searcher.open` uses it whenever the index
holds one and no other ``--model`` is named. Without it (an index built before 0.9, with
``--no-query-encoder``, a model whose tokenizer has no ``tokenizer.json``, no onnxruntime
installed) search loads the sentence-transformers model as before, with a note.

Why in the index folder and not a separate export: the index and the encoder must come from the
same model; kept together, they are copied, replaced and removed together, and the encoder's
stamp is compared with the index's before a query is embedded.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..embed.stamp import ModelStamp

logger = logging.getLogger("mrl_plugins")

FOLDER = "query_encoder"
RECORD = "query_encoder.json"
GRAPH = "model.onnx"
TOKENIZER = "tokenizer.json"
TOLERANCE = 1e-4
"""Largest difference of any coordinate from the torch model's normalised vectors (the export's)."""
PROBES = (
    "how do I resize images from the command line",
    "Python bindings for the GNU Scientific Library",
    "  Leading and trailing spaces, UPPER case and ünïcödé  ",
    "x",
    "documentation " * 300,  # longer than the model reads: the truncation is exercised
)
BATCH = 64


@dataclass(frozen=True)
class QueryEncoder:
    """An index folder's ``query_encoder/``, loaded: ``encoder(texts)`` → unit-length, full-width
    float32 query vectors (the model's query prompt applied), as the model that built the index
    gives them."""

    folder: Path
    record: dict[str, Any]
    session: Any
    tokenizer: Any

    @property
    def stamp(self) -> ModelStamp:
        """The stamp of the model the graph was traced from (checked against the index's)."""
        stamp = self.record["stamp"]
        return ModelStamp(stamp["name"], tuple(stamp["probe"]))

    @classmethod
    def open(cls, index_folder: Path) -> QueryEncoder | None:
        """The encoder kept in ``index_folder``, or ``None`` when there is none (or it cannot be
        run here: then the reason is logged and search falls back to the model)."""
        folder = Path(index_folder) / FOLDER
        if not (folder / RECORD).is_file():
            return None
        try:
            record = json.loads((folder / RECORD).read_text(encoding="utf-8"))
            import onnxruntime as ort
            from tokenizers import Tokenizer
        except (OSError, ValueError, ImportError) as exc:
            logger.warning("%s cannot be used (%s); loading the model instead.", folder, exc)
            return None
        tokenizer = Tokenizer.from_file(str(folder / TOKENIZER))
        tokenizer.enable_truncation(max_length=int(record["max_seq_length"]))
        tokenizer.enable_padding(pad_id=int(record["pad_id"]), pad_token=record["pad_token"])
        options = ort.SessionOptions()
        options.log_severity_level = 3
        session = ort.InferenceSession(str(folder / GRAPH), options, providers=["CPUExecutionProvider"])
        return cls(folder, record, session, tokenizer)

    def __call__(self, texts: Sequence[str], role: str = "query") -> np.ndarray:
        prompt = (self.record.get("prompts") or {}).get(role, "")
        texts = [str(prompt + t).strip() for t in texts]
        if self.record.get("lower_case"):
            texts = [t.lower() for t in texts]
        if not texts:
            return np.zeros((0, int(self.record["full_dim"])), np.float32)
        order = np.argsort([-len(t) for t in texts], kind="stable")  # batches of texts of about one length
        out = np.empty((len(texts), int(self.record["full_dim"])), np.float32)
        for start in range(0, len(texts), BATCH):
            rows = order[start : start + BATCH]
            encoded = self.tokenizer.encode_batch([texts[i] for i in rows])
            feeds = {"input_ids": [e.ids for e in encoded], "attention_mask": [e.attention_mask for e in encoded],
                     "token_type_ids": [e.type_ids for e in encoded]}
            inputs = {name: np.asarray(feeds[name], dtype=np.int64) for name in self.record["inputs"]}
            out[rows] = self.session.run(None, inputs)[0]
        return out


def write_query_encoder(model: Any, stamp: ModelStamp, index_folder: Path) -> str | None:
    """Trace ``model`` into ``index_folder/query_encoder`` and check it; ``None`` when written,
    else why not (nothing is then left of it)."""
    try:
        import onnx  # noqa: F401  (torch's exporter writes with it)
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        return f"{exc.name} is not installed (pip install 'mrl-plugins[export]')"
    from ..errors import UserError
    from ..evaluation.encode import encode_texts, normalise
    from ..export.onnx import check_exportable, export_onnx, tokenizer_inputs
    from ..models import full_width

    hf_tokenizer: Any = getattr(model, "tokenizer", None)
    if not getattr(hf_tokenizer, "is_fast", False):
        return "the model's tokenizer is not a fast one (no tokenizer.json to run without transformers)"
    try:
        check_exportable(model)
    except UserError as exc:
        return str(exc).split(";")[0]
    first = model[0]
    folder = Path(index_folder) / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    device = getattr(model, "device", None)
    moved = device is not None and getattr(device, "type", "cpu") != "cpu"
    if moved:  # traced and checked on the CPU, where onnxruntime will run it
        model.to("cpu")
    try:
        export_onnx(model, folder, dim=None)
        hf_tokenizer.backend_tokenizer.save(str(folder / TOKENIZER))
        record = {
            "graph": GRAPH, "tokenizer": TOKENIZER, "inputs": tokenizer_inputs(model), "full_dim": full_width(model),
            "normalized": True, "max_seq_length": int(model.max_seq_length),
            "lower_case": bool(getattr(first, "do_lower_case", False)),
            "pad_id": int(hf_tokenizer.pad_token_id or 0), "pad_token": str(hf_tokenizer.pad_token or "[PAD]"),
            "prompts": {role: str(text) for role, text in (getattr(model, "prompts", None) or {}).items()
                        if role in ("query", "document")},
            "stamp": {"name": stamp.name, "probe": list(stamp.probe)},
        }
        (folder / RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        encoder = QueryEncoder.open(index_folder)
        if encoder is None:
            raise RuntimeError("it could not be opened")
        difference = max(
            float(np.abs(encoder(list(PROBES), role=role) - normalise(encode_texts(model, list(PROBES), role=role)))
                  .max())
            for role in ("query", "document")
        )
        if difference > TOLERANCE:
            raise RuntimeError(f"it differs from the model by {difference:.1e} (more than {TOLERANCE:g}) on probe "
                               "texts")
        record["max_abs_difference"] = difference
        (folder / RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    except Exception as exc:  # any failure leaves no encoder: search then loads the model
        shutil.rmtree(folder, ignore_errors=True)
        return str(exc) or type(exc).__name__
    finally:
        if moved:
            model.to(device)
    return None
