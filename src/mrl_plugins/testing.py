"""Helpers for testing mrl-plugins and plugins written for it (as tox ships ``tox.pytest``).

``tiny_model`` builds a randomly initialised BERT sentence-transformer of a few thousand
parameters with its own vocabulary: no download, loads in milliseconds, good for pipelines.
``isolated_registry`` registers only the built-ins plus the plugin objects you pass, ignoring
whatever is installed, so a test sees exactly the components it set up.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .plugins import Registry, load_registry

_SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
_WORDS = """a an and are as at be by for from has in is it of on or that the to with this
package library tool tools data files file command line client server python perl java rust
go web http network system kernel linux debian game games audio video image text editor font
fonts documentation development headers shared module modules plugin plugins support utility
utilities interface graphical desktop terminal database sql test tests build compiler
language programming parser format convert converter manager management simple fast small
free open source implementation version binding bindings runtime framework query search
engine index document documents model models train evaluation""".split()


def tiny_model(path: str | Path, *, dim: int = 32, words: Iterable[str] = (), seed: int = 0) -> Path:
    """Save a tiny ``SentenceTransformer`` (Transformer → mean Pooling → Normalize) at ``path``."""
    path = Path(path)
    with tempfile.TemporaryDirectory() as tmp:
        _save_tiny(path, Path(tmp), dim, words, seed)
    return path


def _save_tiny(path: Path, hf_dir: Path, dim: int, words: Iterable[str], seed: int) -> None:
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    from ._st import st_models

    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [str(d) for d in range(10)]
    vocab = list(dict.fromkeys(_SPECIAL + letters + [f"##{c}" for c in letters] + _WORDS + [w.lower() for w in words]))
    ids = {token: i for i, token in enumerate(vocab)}
    # built with `tokenizers` directly: BertTokenizerFast's vocab keyword differs across transformers versions
    wordpiece = Tokenizer(models.WordPiece(vocab=ids, unk_token="[UNK]"))
    wordpiece.normalizer = normalizers.BertNormalizer(lowercase=True)
    wordpiece.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    wordpiece.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", ids["[CLS]"]), ("[SEP]", ids["[SEP]"])],
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=wordpiece, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
        sep_token="[SEP]", mask_token="[MASK]", model_max_length=128,
    )
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(vocab), hidden_size=dim, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=dim * 2, max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(hf_dir)
    tokenizer.save_pretrained(hf_dir)

    from sentence_transformers import SentenceTransformer

    m = st_models()
    transformer = m.Transformer(str(hf_dir))
    transformer.max_seq_length = 64
    model = SentenceTransformer(modules=[transformer, m.Pooling(dim, "mean"), m.Normalize()], device="cpu")
    model.save(str(path))


def isolated_registry(*plugins: Any, entry_points: bool = False) -> Registry:
    """Built-ins plus ``plugins`` (modules or objects with ``@hookimpl`` methods), nothing else."""
    registry = load_registry(entry_points=entry_points)
    for i, plugin in enumerate(plugins):
        registry.add_plugin(plugin, getattr(plugin, "__name__", None) or f"test-plugin-{i}", "test")
    return registry


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> Path:
    path = Path(path)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path
