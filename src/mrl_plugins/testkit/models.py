"""A tiny sentence-transformer built in the test (no download) and a registry of just the plugins
a test passes.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..plugins import Registry, load_registry

_SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


_WORDS = """a an and are as at be by for from has in is it of on or that the to with this
package library tool tools data files file command line client server python perl java rust
go web http network system kernel linux debian game games audio video image text editor font
fonts documentation development headers shared module modules plugin plugins support utility
utilities interface graphical desktop terminal database sql test tests build compiler
language programming parser format convert converter manager management simple fast small
free open source implementation version binding bindings runtime framework query search
engine index document documents model models train evaluation""".split()


def tiny_model(path: str | Path, *, dim: int = 32, words: Iterable[str] = (), seed: int = 0, layers: int = 1) -> Path:
    """Save a tiny ``SentenceTransformer`` (Transformer → mean Pooling → Normalize) at ``path``."""
    path = Path(path)
    with tempfile.TemporaryDirectory() as tmp:
        _save_tiny(path, Path(tmp), dim, words, seed, layers)
    return path


def _save_tiny(path: Path, hf_dir: Path, dim: int, words: Iterable[str], seed: int, layers: int = 1) -> None:
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    from ..models.compat import st_models

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
        vocab_size=len(vocab), hidden_size=dim, num_hidden_layers=layers, num_attention_heads=2,
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


TOPICS = """audio video image text font game database network kernel editor compiler parser
server client terminal desktop plugin module library python perl java rust web http search
index query engine format converter runtime framework binding documentation""".split()
