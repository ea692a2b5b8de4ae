"""Data sources: the Debian parser on real text, leakage-free splits, local files and columns."""

from __future__ import annotations

import bz2
import gzip
import lzma
import random
from pathlib import Path

import pytest

from mrl_plugins.builtin.debian import DebianSource, read_catalogue, usable_packages
from mrl_plugins.builtin.local import LocalSource
from mrl_plugins.data.split import find_leaks, split_by_query
from mrl_plugins.data.types import DataRequest, IRSet, IRSetError, RowFormat
from mrl_plugins.errors import UserError
from mrl_plugins.testkit.recipes import toy_pairs, write_jsonl

EXCERPT = Path(__file__).parent / "data" / "debian-excerpt-Translation-en"


def test_debian_parser_on_real_excerpt():
    packages = read_catalogue(EXCERPT)
    assert [p.name for p in packages] == [
        "0ad", "0ad-data", "0ad-data-common", "0xffff", "2048", "2048-qt", "2ping", "2vcard", "bcal",
    ]
    zero = packages[3]
    assert zero.synopsis == "Open Free Fiasco Firmware Flasher"
    assert zero.document.startswith("The ‘Open Free Fiasco Firmware Flasher’ aka 0xFFFF utility implements a free")
    assert zero.document.endswith("flashing utility called flasher.")
    assert len(zero.paragraphs) == 3  # paragraphs split on " ."
    assert "\n" not in zero.document and "  " not in zero.document


def test_shared_and_near_empty_descriptions_are_dropped():
    usable = {p.name for p in usable_packages(read_catalogue(EXCERPT), min_chars=40)}
    assert not usable & {"0ad", "0ad-data", "0ad-data-common"}  # one description, three packages
    assert "bcal" not in usable  # first paragraph is just "Feature"
    assert {"0xffff", "2048", "2ping", "2vcard"} <= usable


@pytest.mark.parametrize("opener", [lzma.open, gzip.open, bz2.open, open])
def test_debian_reads_compressed_files(tmp_path, opener):
    path = tmp_path / "Translation-en.any"
    with opener(path, "wt", encoding="utf-8") as fh:
        fh.write(EXCERPT.read_text(encoding="utf-8"))
    assert [p.name for p in read_catalogue(path)][:2] == ["0ad", "0ad-data"]


def test_debian_rejects_lz4_with_a_fix(tmp_path):
    path = tmp_path / "Translation-en.lz4"
    path.write_bytes(b"\x04\x22\x4d\x18rest")
    with pytest.raises(UserError, match="lz4 -d"):
        read_catalogue(path)


def test_debian_source_split_has_no_leakage():
    root = Path(__file__).resolve().parents[1]
    source = DebianSource(DebianSource.Params(path="data/debian-sample-Translation-en.xz", train_pairs=500, eval_queries=100, corpus_size=400))
    bundle = source.load(DataRequest("pairs", seed=3, recipe_dir=root))
    assert len(bundle.train) == 500 and len(bundle.eval.queries) == 100 and len(bundle.eval.corpus) == 400
    texts = set(bundle.train["anchor"]) | set(bundle.train["positive"])
    assert find_leaks(texts, bundle.eval) == (0, 0)
    assert not texts & set(bundle.eval.corpus.values())  # distractors are held out too


def test_split_by_query_never_leaks_even_with_shared_documents():
    rng = random.Random(0)
    rows = [{"anchor": f"q{rng.randrange(60)}", "positive": f"d{rng.randrange(80)}", "negative": f"d{rng.randrange(80)}"} for _ in range(300)]
    split = split_by_query(rows, eval_queries=10, seed=1, corpus_size=40)
    assert len(split.eval.queries) == 10
    assert len(split.eval.corpus) >= 40  # never fewer than the held-out queries' own documents
    train_texts = [t for r in split.train_rows for t in r.values()]
    assert find_leaks(train_texts, split.eval) == (0, 0)
    assert split.dropped_for_leakage > 0


def test_find_leaks_detects_a_planted_leak():
    rows = toy_pairs(30)
    split = split_by_query(rows, eval_queries=5, seed=0)
    leaked_query = next(iter(split.eval.queries.values()))
    assert find_leaks([leaked_query], split.eval) == (1, 0)


def _local(tmp_path, **params):
    return LocalSource(LocalSource.Params(**params)), DataRequest(params.get("format", "pairs") if params.get("format") != "triplets" else "triplets", seed=0, recipe_dir=tmp_path)


def test_local_triplets_with_column_mapping(tmp_path):
    rows = [{"q": r["anchor"], "pos": r["positive"], "neg": r["negative"]} for r in toy_pairs(80)]
    write_jsonl(tmp_path / "t.jsonl", rows)
    source, request = _local(tmp_path, path="t.jsonl", format="triplets", columns={"anchor": "q", "positive": "pos", "negative": "neg"}, eval_queries=10)
    bundle = source.load(request)
    assert bundle.train.column_names == ["anchor", "positive", "negative"]
    assert len(bundle.eval.queries) == 10
    texts = [t for col in bundle.train.column_names for t in bundle.train[col]]
    assert find_leaks(texts, bundle.eval) == (0, 0)
    # the same file serves a pairs-only loss
    pairs = source.load(DataRequest("pairs", seed=0, recipe_dir=tmp_path))
    assert pairs.train.column_names == ["anchor", "positive"]


def test_local_missing_column_names_what_exists(tmp_path):
    write_jsonl(tmp_path / "p.jsonl", [{"question": "a", "answer": "b"}])
    source, request = _local(tmp_path, path="p.jsonl")
    with pytest.raises(UserError, match=r"missing columns 'anchor', 'positive'; it has 'question', 'answer'"):
        source.load(request)


def test_local_scored_pairs_csv(tmp_path):
    lines = ["s1,s2,label"]
    for i, r in enumerate(toy_pairs(60)):
        lines.append(f"{r['anchor']},{r['positive']},1.0")
        lines.append(f"{r['anchor']},{r['negative']},0.{i % 5}")
    (tmp_path / "s.csv").write_text("\n".join(lines) + "\n")
    source = LocalSource(LocalSource.Params(path="s.csv", format="scored-pairs", columns={"sentence1": "s1", "sentence2": "s2", "score": "label"}, eval_queries=8))
    bundle = source.load(DataRequest("scored-pairs", seed=0, recipe_dir=tmp_path))
    assert bundle.train.column_names == ["sentence1", "sentence2", "score"]
    assert len(bundle.eval.queries) == 8
    # only pairs above the threshold are relevant; the low-score partner is in the corpus as a distractor
    assert all(len(docs) == 1 for docs in bundle.eval.relevant.values())
    assert len(bundle.eval.corpus) == 16


def test_local_separate_eval_file_removes_overlap_from_training(tmp_path):
    rows = toy_pairs(60)
    write_jsonl(tmp_path / "train.jsonl", rows)
    write_jsonl(tmp_path / "eval.jsonl", rows[:10])
    source, request = _local(tmp_path, path="train.jsonl", eval_path="eval.jsonl")
    bundle = source.load(request)
    assert len(bundle.eval.queries) == 10 and len(bundle.train) == 50


def test_irset_counts_queries_without_relevant_documents_and_refuses_inconsistency():
    ir = IRSet({"q1": "a", "q2": "b", "q3": "c"}, {"d1": "x"}, {"q1": {"d1"}, "q2": set()})
    assert list(ir.queries) == ["q1"] and ir.dropped_queries == 2
    with pytest.raises(IRSetError, match="1 relevant document ids are not in the corpus"):
        IRSet({"q1": "a"}, {"d1": "x"}, {"q1": {"d9"}})
    with pytest.raises(IRSetError, match="1 query ids in 'relevant' are not among the queries"):
        IRSet({"q1": "a"}, {"d1": "x"}, {"q1": {"d1"}, "q7": {"d1"}})


def test_row_format_is_a_type_that_strings_compare_equal_to():
    assert RowFormat("scored-pairs") is RowFormat.SCORED_PAIRS and RowFormat.PAIRS == "pairs"
    assert RowFormat.TRIPLETS.columns == ("anchor", "positive", "negative")
    assert f"{RowFormat.PAIRS}" == "pairs"


def test_manpages_source_reads_the_committed_pairs_without_leakage():
    from mrl_plugins.builtin.manpages import ManpagesSource

    root = Path(__file__).resolve().parents[1]
    source = ManpagesSource(ManpagesSource.Params(path="data/manpages-debian12-pairs.jsonl.xz", eval_queries=100,
                                                  corpus_size=300, train_pairs=200))
    bundle = source.load(DataRequest("pairs", seed=1, recipe_dir=root))
    assert len(bundle.train) == 200 and len(bundle.eval.queries) == 100 and len(bundle.eval.corpus) == 300
    assert find_leaks(bundle.training_texts(), bundle.eval) == (0, 0)


def test_docstrings_source_reads_the_confirmation_pairs_and_leaves_spare_rows_to_validate_on():
    from mrl_plugins.builtin.docstrings import DocstringsSource
    from mrl_plugins.data.split import ValidationSize, carve_validation

    root = Path(__file__).resolve().parents[1]
    source = DocstringsSource(DocstringsSource.Params(path="data/python311-docstrings-pairs.jsonl.xz",
                                                      eval_queries=400, corpus_size=800, train_pairs=1000))
    bundle = source.load(DataRequest("pairs", seed=42, recipe_dir=root))
    assert len(bundle.train) == 1000 and len(bundle.eval.queries) == 400 and len(bundle.eval.corpus) == 800
    assert find_leaks(bundle.training_texts(), bundle.eval) == (0, 0) and len(bundle.spare) > 200
    carved = carve_validation(bundle, ValidationSize(queries=200, corpus=1000), seed=42)
    assert carved.from_spare == 200 and carved.bundle.train is bundle.train  # training untouched
    assert find_leaks(bundle.training_texts(), carved.bundle.validation) == (0, 0)
