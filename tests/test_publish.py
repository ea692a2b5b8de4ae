"""Publishing: saved models load truncated, the card carries the evidence, pushes are safe."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mrl_plugins.cli import main
from mrl_plugins.errors import RecipeError
from mrl_plugins.evidence.decisions import recommended_widths
from mrl_plugins.recipe.load import load_recipe
from mrl_plugins.results import SCHEMA_VERSION, RunResults
from mrl_plugins.testkit.recipes import run_recipe, toy_pairs
from tests.hub_server import FakeHub

pytestmark = pytest.mark.slow  # trains tiny runs or starts processes: outside the fast lane (-m 'not slow')

OLD_RUN = Path(__file__).parent / "data" / "run-v0.1"


@pytest.fixture
def finished_run(finished_tiny_run):
    """The session's finished tiny run ([publish] truncate_dim = 16); tests copy it to change it."""
    return finished_tiny_run


@pytest.fixture
def hub(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # no saved login leaks in
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    with FakeHub() as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        yield server


def test_saved_model_loads_with_recorded_truncate_dim(finished_run):
    from sentence_transformers import SentenceTransformer

    model_dir = finished_run / "model"
    config = json.loads((model_dir / "config_sentence_transformers.json").read_text())
    assert config["truncate_dim"] == 16
    assert SentenceTransformer(str(model_dir), device="cpu").encode(["audio tools"]).shape == (1, 16)
    assert SentenceTransformer(str(model_dir), device="cpu", truncate_dim=8).encode(["audio"]).shape == (1, 8)


def test_model_card_holds_the_runs_numbers(finished_run):
    from huggingface_hub import ModelCard

    results = RunResults.load(finished_run / "results.json")
    card = ModelCard.load(finished_run / "model" / "README.md")
    assert card.data["matryoshka_dims"] == [32, 16, 8] and card.data["mrl_truncate_dim"] == 16
    rec = recommended_widths(results)
    assert card.data["mrl_recommended_dim"] == rec[0.99] and card.data["mrl_minimum_dim"] == rec[0.95]
    assert card.data["mrl_chosen_on"] == results.chosen_on == "validation"
    assert [(w["dim"], w["target"], w["metric"]) for w in card.data["mrl_widths"]] == \
        [(rec[0.99], 0.99, "mrr@10"), (rec[0.95], 0.95, "mrr@10")]
    for width in card.data["mrl_widths"]:  # the held-out share, read off the run's own numbers
        assert width["kept"] == round(results.value("mrl", width["dim"]) / results.value("mrl", 32), 4)
    assert card.data["library_name"] == "sentence-transformers"  # sentence-transformers' own front matter stays
    for d in (32, 16, 8):
        m = results.models["mrl"].metrics[d]
        assert f"| {d} | {m['mrr@10']:.4f} | {m['recall@10']:.4f} | {m['ndcg@10']:.4f} |" in card.text
    example, share = (rec[0.99], "99%") if rec[0.99] < 32 else (rec[0.95], "95%")
    assert f'truncate_dim={example})  # keeps ≥ {share} of full-dim mrr@10' in card.text
    # the snippet re-normalises truncated vectors, and says why
    assert 'query = model.encode_query(["a query"], normalize_embeddings=True)' in card.text
    assert "documents = model.encode_document([" in card.text and "Why `normalize_embeddings=True`" in card.text
    assert card.text.count("<!-- mrl-plugins:start -->") == 1
    meta = json.loads((finished_run / "model" / "mrl.json").read_text())
    assert meta["matryoshka_dims"] == [32, 16, 8] and meta["truncate_dim"] == 16
    assert meta["recommended_dims"] == {"99%": rec[0.99], "95%": rec[0.95]}


def test_recommended_dims_use_the_thresholds_defined_once():
    results = RunResults.load(OLD_RUN / "results.json")
    # MRL of the quickstart: 384 keeps 100%, 192 98.9%, 96 96.6%, 48 87.3% of full-dimension MRR@10
    assert recommended_widths(results) == {0.99: 384, 0.95: 96}
    assert results.smallest_dim_keeping("mrl", 0.98) == 192


def test_training_examples_stay_out_of_the_card_on_request(tiny_recipe, recipe_path, tmp_path):
    from huggingface_hub import ModelCard

    default = ModelCard.load(_run_with_card(tiny_recipe, recipe_path, tmp_path, True) / "README.md")
    assert default.data.get("widget") and "Samples:" in default.text
    private = _run_with_card(tiny_recipe, recipe_path, tmp_path, False)
    card = ModelCard.load(private / "README.md")
    assert not card.data.get("widget") and "Samples:" not in card.text
    train_texts = {t for r in toy_pairs() for t in r.values()}
    assert not any(t in card.content for t in train_texts), "a training text reached the card"


def _run_with_card(builder, recipe_path, tmp_path, examples: bool) -> Path:
    out = tmp_path / f"out-{examples}"
    builder.set("output_dir", str(out)).set("publish.card_examples", examples)
    run_recipe(builder.write(recipe_path), "-q").assert_success()
    return out / "model"


def test_a_run_of_the_previous_version_loads_rereports_and_publishes(finished_run, hub, tmp_path):
    old = RunResults.load(OLD_RUN / "results.json")
    assert old.schema_version == SCHEMA_VERSION and list(old.models) == ["base", "mrl", "compare:base · PCA", "no-mrl"]
    assert old.models["no-mrl"].label == "no-MRL" and old.models["no-mrl"].kind == "model"
    assert old.value("mrl", 48) == 0.750953 and old.train["no-mrl"].matryoshka is False
    run = tmp_path / "old-run"
    shutil.copytree(OLD_RUN, run)
    shutil.copytree(finished_run / "model", run / "model")  # any saved model will do for the push
    for name in ("config.json", "sentence_bert_config.json", "1_Pooling/config.json"):  # as saved before 0.8
        path = run / "model" / name
        data = json.loads(path.read_text())
        path.write_text(json.dumps({k: v for k, v in data.items() if k not in (
            "is_matryoshka", "matryoshka_dimensions", "max_seq_length", "word_embedding_dimension")
            and not k.startswith("pooling_mode_")}))
    assert main(["report", str(run)]) == 0
    assert "| 48 | 192 MB | 0.6578 (79.7%) | 0.7510 (87.3%) | 0.6589 (79.8%) | 0.7369 (84.9%) |" in (run / "report.md").read_text()
    # the card and default dimension are rebuilt from the old results, then pushed
    assert main(["publish", str(run), "--repo-id", "alice/old-run", "--truncate-dim", "recommended"]) == 0
    card = hub.state.files[("alice/old-run", "main")]["README.md"].decode()
    assert "| 48 | 0.7510 | 0.8800 | 0.7823 | 87.3% | 0.6578 | 0.6589 | 0.7369 |" in card
    assert "mrl_truncate_dim: 384" in card and "mrl_minimum_dim:" in card and "mrl_widths:" in card
    pushed = hub.state.files[("alice/old-run", "main")]
    for files in (pushed, {name: (run / "model" / name).read_bytes() for name in pushed if (run / "model" / name).is_file()}):
        config = json.loads(files["config.json"])  # what vLLM reads, pushed and kept in the run's model
        assert config["is_matryoshka"] is True and config["matryoshka_dimensions"] == sorted(old.dims, reverse=True)
        assert json.loads(files["sentence_bert_config.json"])["max_seq_length"] == 64  # what TEI parses
        assert json.loads(files["1_Pooling/config.json"])["pooling_mode_mean_tokens"] is True
    again = RunResults.load(run / "results.json")
    assert again.schema_version == SCHEMA_VERSION and again.publish.repo_id == "alice/old-run" and again.publish.truncate_dim == 384


def test_a_run_of_0_2_publishes_with_its_decisions_read_from_parameters(finished_run, hub, tmp_path):
    run = tmp_path / "run-0.2"
    shutil.copytree(OLD_RUN.parent / "run-v0.2", run)
    shutil.copytree(finished_run / "model", run / "model")  # any saved model will do for the push
    # its binary + rescore setting was slower than exact search (7×), which is never served now: make it faster,
    # so that the decision read from its schema-2 parameters is the one served
    raw = json.loads((run / "results.json").read_text())
    for cost in raw["models"]["compare:MRL · quantize binary + rescore"]["costs"].values():
        cost["ratio_single"] = 0.5
    (run / "results.json").write_text(json.dumps(raw))
    assert main(["publish", str(run), "--repo-id", "alice/run-02", "--truncate-dim", "recommended"]) == 0
    card = hub.state.files[("alice/run-02", "main")]["README.md"].decode()
    meta = json.loads(hub.state.files[("alice/run-02", "main")]["mrl.json"].decode())
    # the serving decision of the 0.2 run, with the parameters its schema-2 labels carried
    assert meta["serving"]["column"] == "compare:MRL · quantize binary + rescore"
    assert meta["serving"]["params"] == {"precision": "binary", "rescore": True}
    assert "### Serving" in card and "MRL · quantize binary + rescore at" in card
    again = RunResults.load(run / "results.json")
    assert again.schema_version == SCHEMA_VERSION and "compare:MRL · funnel 10 hnsw → 16" in again.models  # keys kept
    assert again.models["compare:MRL · funnel 10 hnsw → 16"].params["index"] == "hnsw"


def test_push_uploads_the_saved_folder(finished_run, hub, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    assert main(["publish", str(run), "--revision", "v1"]) == 0
    assert hub.state.repos["alice/tiny-mrl"]["name"] == "tiny-mrl"
    arrived = hub.state.files[("alice/tiny-mrl", "v1")]
    local = {p.relative_to(run / "model").as_posix(): p.read_bytes() for p in (run / "model").rglob("*") if p.is_file()}
    assert arrived == local
    assert all(t == "Bearer hf_test_token" for t in hub.state.tokens)
    assert RunResults.load(run / "results.json").publish.repo_id == "alice/tiny-mrl"


def test_a_pushed_run_loads_back_from_the_hub_by_repo_id_truncated(finished_run, hub, tmp_path, monkeypatch):
    """The mission's last step, end to end: push, then ``SentenceTransformer(repo_id, truncate_dim=…)``."""
    import numpy as np
    from sentence_transformers import SentenceTransformer

    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    assert main(["publish", str(run)]) == 0  # alice/tiny-mrl, [publish] truncate_dim = 16
    hub.serve_downloads(monkeypatch)
    texts = ["audio tools for the desktop", "a small text editor"]
    cache = str(tmp_path / "download-cache")
    remote = SentenceTransformer("alice/tiny-mrl", truncate_dim=8, device="cpu", cache_folder=cache)
    local = SentenceTransformer(str(run / "model"), truncate_dim=8, device="cpu")
    assert remote.encode(texts).shape == (2, 8)
    np.testing.assert_allclose(remote.encode(texts), local.encode(texts), atol=1e-6)
    published = SentenceTransformer("alice/tiny-mrl", device="cpu", cache_folder=cache)
    assert published.encode(texts).shape == (2, 16)  # the default width the run published
    assert any(method == "GET" and path.startswith("/alice/tiny-mrl/resolve/") and "model.safetensors" in path
               for method, path in hub.state.requests)


def test_publish_can_change_the_default_dimension(finished_run, hub, tmp_path, caplog):
    import logging

    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    with caplog.at_level(logging.INFO, logger="mrl_plugins"):
        assert main(["publish", str(run), "--truncate-dim", "8"]) == 0
    assert f"pushed {run / 'model'} to " in caplog.text  # the run's model, never the staged copy pushed
    assert "publish-staging" not in caplog.text
    assert hub.state.files[("alice/tiny-mrl", "main")]["config_sentence_transformers.json"].count(b'"truncate_dim": 8') == 1
    assert b"mrl_truncate_dim: 8" in hub.state.files[("alice/tiny-mrl", "main")]["README.md"]


def test_failed_upload_keeps_model_and_says_how_to_retry(finished_run, hub, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    hub.state.fail_commit = 403
    assert main(["publish", str(run)]) == 1
    err = capsys.readouterr().err
    assert "failed" in err and f"mrl-run publish {run}" in err and "Nothing local was changed" in err and "Traceback" not in err
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    hub.state.fail_commit = None
    assert main(["publish", str(run)]) == 0  # the retry works


def test_push_without_token_fails_at_validation(tiny_recipe, recipe_path, monkeypatch, tmp_path):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))
    recipe = tiny_recipe.set("publish", {"push": True, "repo_id": "alice/x"}).write(recipe_path)
    with pytest.raises(RecipeError) as info:
        load_recipe(recipe)
    assert any("no Hugging Face token found" in p for p in info.value.problems)
    assert run_recipe(recipe).code == 2 and not (tmp_path / "out").exists()  # nothing trained


def test_push_true_needs_repo_id_and_truncate_dim_in_range(tiny_recipe, recipe_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "x")
    with pytest.raises(RecipeError) as info:
        load_recipe(tiny_recipe.set("publish", {"push": True, "truncate_dim": 64}).write(recipe_path))
    joined = "\n".join(info.value.problems)
    assert "[publish] repo_id: required when push = true" in joined
    assert "[publish] truncate_dim: must be between 1 and the model's dimension 32" in joined


def test_push_during_run_goes_to_the_hub(tiny_recipe, recipe_path, hub, tmp_path):
    tiny_recipe.set("publish", {"push": True, "repo_id": "alice/run-push", "truncate_dim": "recommended"})
    results = run_recipe(tiny_recipe.write(recipe_path), "-q").assert_success().results
    assert results.publish.commit_url.endswith("/alice/run-push/commit/abc123")
    assert results.publish.truncate_dim == results.publish.recommended_dims["99%"]
    assert "model.safetensors" in hub.state.files[("alice/run-push", "main")]
