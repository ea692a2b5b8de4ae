"""Helpers for testing mrl-plugins and plugins written for it (as tox ships ``tox.pytest``).

* ``tiny_model(path)``: a randomly initialised BERT sentence-transformer of a few thousand
  parameters with its own vocabulary; no download, loads in milliseconds.
* ``toy_pairs(n)``: distinct (anchor, positive, negative) rows in words the tiny model knows.
* ``RecipeBuilder``: a recipe as nested tables, changed with ``set()``/``add_comparison()``
  and written as TOML, so tests never edit recipe text.
* ``run_recipe(path, *args) -> RunOutcome``: ``mrl-run`` on a recipe, with ``.code``, ``.out``,
  ``.err``, ``.results`` and ``assert_success()``.
* ``isolated_registry(*plugins)``: the built-ins plus the plugin objects you pass, ignoring
  whatever else is installed.
* ``ArrayComparisonContext`` / ``TextsWarmStartContext``: the contexts a comparison or a warm
  start receives, over plain arrays and texts, to test one without a run.
* ``assert_index_backend_conforms``, ``assert_data_source_conforms``,
  ``assert_comparison_conforms``, ``assert_objective_conforms``: each kind's whole contract in one
  call (defined in :mod:`mrl_plugins.conformance`, re-exported here with the rest of the kit).
"""

from __future__ import annotations

import contextlib
import io
import json
import random
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .components import ComparisonContext, IndexBackend, Metrics, Role, TextSide, WarmStartContext
from .data import IRSet
from .plugins import Registry, load_registry

if TYPE_CHECKING:
    import numpy as np

    from .evidence.results import RunResults

_SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
_WORDS = """a an and are as at be by for from has in is it of on or that the to with this
package library tool tools data files file command line client server python perl java rust
go web http network system kernel linux debian game games audio video image text editor font
fonts documentation development headers shared module modules plugin plugins support utility
utilities interface graphical desktop terminal database sql test tests build compiler
language programming parser format convert converter manager management simple fast small
free open source implementation version binding bindings runtime framework query search
engine index document documents model models train evaluation""".split()


def __getattr__(name: str) -> Any:
    """The conformance checks, imported on first use (they import numpy and, for objectives,
    torch; the pytest plugin imports this module in every session)."""
    from . import conformance

    if name in conformance.__all__:
        return getattr(conformance, name)
    raise AttributeError(f"module 'mrl_plugins.testing' has no attribute {name!r}")


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


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> Path:
    path = Path(path)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


TOPICS = """audio video image text font game database network kernel editor compiler parser
server client terminal desktop plugin module library python perl java rust web http search
index query engine format converter runtime framework binding documentation""".split()


def toy_pairs(n: int = 160, seed: int = 0) -> list[dict[str, str]]:
    """Distinct (anchor, positive, negative) rows whose anchor and positive share words, all of
    them in ``tiny_model``'s vocabulary."""
    rng = random.Random(seed)
    rows: list[dict[str, str]] = []
    seen: set[tuple[str, ...]] = set()
    while len(rows) < n:
        a, b, c = rng.sample(TOPICS, 3)
        if (a, b, c) in seen:
            continue
        seen.add((a, b, c))
        d, e = rng.sample([t for t in TOPICS if t not in (a, b, c)], 2)
        rows.append({
            "anchor": f"{a} {b} {c}",
            "positive": f"the {a} {b} {c} package with tools",
            "negative": f"the {d} {e} library for {c}",
        })
    return rows


# -- recipes ---------------------------------------------------------------------------------
@dataclass
class RecipeBuilder:
    """A recipe as nested tables: change it with :meth:`set` and :meth:`add_comparison`, then
    :meth:`write` it as TOML. Relative paths in it are relative to where it is written."""

    table: dict[str, Any]

    @classmethod
    def tiny(
        cls, model: str | Path, data: dict[str, Any], *, output_dir: str | Path, loss: str = "mnr",
        dims: dict[str, Any] | None = None, max_steps: int = 3,
    ) -> RecipeBuilder:
        """A complete recipe that trains for a few steps: made for ``tiny_model`` and small data."""
        return cls({
            "name": "tiny",
            "seed": 1,
            "output_dir": str(output_dir),
            "model": {"name": str(model)},
            "data": dict(data),
            "loss": {"name": loss},
            "dims": dict(dims or {"name": "halving", "floor": 8}),
            "train": {"epochs": 1, "batch_size": 16, "max_steps": max_steps, "logging_steps": 1},
        })

    def set(self, key: str, value: Any) -> RecipeBuilder:
        """Set a dotted key (``"train.max_steps"``), creating tables on the way; ``None`` removes it."""
        *parents, last = key.split(".")
        node = self.table
        for part in parents:
            node = node.setdefault(part, {})
        if value is None:
            node.pop(last, None)
        else:
            node[last] = value
        return self

    def add_comparison(self, name: str, **params: Any) -> RecipeBuilder:
        self.table.setdefault("compare", []).append({"name": name, **params})
        return self

    def text(self) -> str:
        import tomli_w

        return tomli_w.dumps(self.table)

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(self.text(), encoding="utf-8")
        return path


@dataclass
class RunOutcome:
    """What ``mrl-run`` did: exit code, printed output, and the run's folder and results."""

    code: int
    out: str
    err: str
    output_dir: Path | None

    @property
    def results(self) -> RunResults:
        from .evidence.rundir import RunDir

        assert self.output_dir is not None, "the recipe's output_dir has a {timestamp}; use a fixed one in tests"
        return RunDir.open(self.output_dir).results()

    def assert_success(self) -> RunOutcome:
        assert self.code == 0, f"mrl-run exited {self.code}\nstdout:\n{self.out[-3000:]}\nstderr:\n{self.err[-3000:]}"
        return self


def run_recipe(recipe: str | Path, *args: str, command: str = "run", in_process: bool = True) -> RunOutcome:
    """Run ``mrl-run COMMAND RECIPE ARGS…`` and return its outcome. In-process by default (fast,
    and monkeypatches apply); ``in_process=False`` starts a fresh interpreter instead."""
    recipe = Path(recipe)
    argv = [command, str(recipe), *args]
    if in_process:
        from .cli import main

        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(argv)
        stdout, stderr = out.getvalue(), err.getvalue()
    else:
        proc = subprocess.run([sys.executable, "-m", "mrl_plugins.cli", *argv], capture_output=True, text=True)
        code, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
    return RunOutcome(code, stdout, stderr, _output_dir(recipe, args))


def run_cli(*args: Any) -> tuple[int, str, str]:
    """``mrl-run ARGS…`` in this process: ``(exit code, stdout, stderr)``; a usage error
    (argparse's exit) is its exit code, as from a shell."""
    from .cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:
            code = int(exc.code or 0) if not isinstance(exc.code, str) else 2
    return code, out.getvalue(), err.getvalue()


def _output_dir(recipe: Path, args: Sequence[str]) -> Path | None:
    import tomllib

    from .recipe import apply_override

    try:
        raw = tomllib.loads(recipe.read_text(encoding="utf-8"))
        overrides = [args[i + 1] for i, a in enumerate(args[:-1]) if a == "--set"]
        for assignment in overrides:
            apply_override(raw, assignment)
    except Exception:  # the run itself reports a broken recipe
        return None
    out = raw.get("output_dir")
    if not isinstance(out, str) or "{" in out:
        return None
    from .recipe import output_path

    return output_path(recipe.parent, out)


# -- contexts ------------------------------------------------------------------------------
@dataclass
class ArrayComparisonContext(ComparisonContext):
    """A comparison's context over arrays: every model's embeddings are ``queries``/``corpus``,
    ``encode`` returns ``fit_vectors`` and records the texts it was asked for in ``encoded``."""

    queries: np.ndarray
    corpus: np.ndarray
    relevant: list[set[int]]
    dims: list[int]
    fit_vectors: np.ndarray | None = None
    texts: Sequence[str] = ()
    k: int = 10
    encoded: list[str] = field(default_factory=list)
    models: dict[str, Any] = field(default_factory=dict)
    """Loaded models ``model()`` serves, when the comparison under test needs one."""
    pairs: Sequence[tuple[str, str]] = ()
    folder: Path | None = None

    def __post_init__(self) -> None:
        self.exact_index = isolated_registry().exact_index()
        self.eval_set = IRSet(
            {f"q{i}": f"query {i}" for i in range(len(self.queries))},
            {f"d{i}": f"doc {i}" for i in range(len(self.corpus))},
            {f"q{i}": {f"d{j}" for j in rel} for i, rel in enumerate(self.relevant)},
        )

    def embeddings(self, model: str) -> tuple[np.ndarray, np.ndarray]:
        return self.queries, self.corpus

    def encode(self, model: str, texts: Sequence[str]) -> np.ndarray:
        self.encoded.extend(texts)
        if self.fit_vectors is None:
            raise ValueError("ArrayComparisonContext: pass fit_vectors to test a comparison that encodes texts")
        return self.fit_vectors

    def train_texts(self, side: TextSide = "documents") -> list[str]:
        return list(self.texts)

    def score(self, queries: np.ndarray, corpus: np.ndarray) -> dict[int, Metrics]:
        from .evaluation import score_dims

        return score_dims(queries, corpus, self.relevant, self.dims, k=self.k)

    def score_ranked(self, ranked: Mapping[int, np.ndarray]) -> dict[int, Metrics]:
        from .evaluation import scores_of

        return scores_of(dict(ranked), self.relevant, self.k)

    def index_backend(self, name: str, params: Mapping[str, Any] | None = None) -> IndexBackend:
        return isolated_registry().build("index", name, params)

    def model(self, name: str) -> Any:
        return self.models[name]

    def output_dir(self) -> Path:
        if self.folder is None:
            self.folder = Path(tempfile.mkdtemp(prefix="mrl-comparison-"))
        self.folder.mkdir(parents=True, exist_ok=True)
        return self.folder

    def train_pairs(self) -> list[tuple[str, str]]:
        return list(self.pairs)


@dataclass
class TextsWarmStartContext(WarmStartContext):
    """A warm start's context over a list of texts, encoded by ``model``; records what it encoded."""

    model: Any
    texts: Sequence[str]
    seed: int = 0
    encoded: list[str] = field(default_factory=list)

    def train_texts(self, side: TextSide = "all") -> list[str]:
        return list(self.texts)

    def encode(self, texts: Sequence[str], role: Role = "document") -> np.ndarray:
        from .evaluation import encode_texts

        self.encoded.extend(texts)
        return encode_texts(self.model, list(texts), role=role)
