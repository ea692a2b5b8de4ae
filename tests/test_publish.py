"""Publishing: saved models load truncated, the card carries the evidence, pushes are safe."""

from __future__ import annotations

import json
import shutil

import pytest

from mrl_plugins.cli import main
from mrl_plugins.errors import RecipeError
from mrl_plugins.publish import recommended_dims
from mrl_plugins.recipe import load_recipe
from tests.hub_server import FakeHub


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_model_dir):
    """One tiny run with [publish] truncate_dim = 16, shared by the tests of this module."""
    from mrl_plugins.testing import write_jsonl
    from tests.conftest import synthetic_pairs

    tmp = tmp_path_factory.mktemp("published")
    write_jsonl(tmp / "pairs.jsonl", synthetic_pairs())
    (tmp / "recipe.toml").write_text(f"""
name = "pub"
output_dir = "{tmp / 'out'}"
[model]
name = "{tiny_model_dir}"
[data]
name = "local"
path = "pairs.jsonl"
eval_queries = 20
[loss]
name = "mnr"
[dims]
name = "explicit"
values = [32, 16, 8]
[train]
max_steps = 2
batch_size = 16
[publish]
truncate_dim = 16
repo_id = "alice/tiny-mrl"
""")
    assert main([str(tmp / "recipe.toml"), "-q"]) == 0
    return tmp / "out"


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
    results = json.loads((finished_run / "results.json").read_text())
    card = (finished_run / "model" / "README.md").read_text()
    front = card.split("---")[1]
    assert "matryoshka_dims: [32, 16, 8]" in front and "mrl_truncate_dim: 16" in front
    mrl = results["models"]["mrl"]["metrics"]
    for dim in ("32", "16", "8"):
        assert f"| {dim} | {mrl[dim]['mrr@10']:.4f} | {mrl[dim]['recall@10']:.4f} | {mrl[dim]['ndcg@10']:.4f} |" in card
    assert "re-normalise" in card
    rec, full = recommended_dims(mrl, [32, 16, 8], "mrr@10"), "32"
    example, share = (rec["99%"], "99%") if rec["99%"] < int(full) else (rec["95%"], "95%")
    assert f'truncate_dim={example})  # keeps ≥ {share} of full-dim MRR@10' in card
    meta = json.loads((finished_run / "model" / "mrl.json").read_text())
    assert meta["matryoshka_dims"] == [32, 16, 8] and meta["truncate_dim"] == 16
    assert meta["recommended_dims"] == recommended_dims(mrl, [32, 16, 8], "mrr@10")


def test_recommended_dims():
    metrics = {"4": {"m": 1.0}, "2": {"m": 0.991}, "1": {"m": 0.96}}
    assert recommended_dims(metrics, [4, 2, 1], "m") == {"99%": 2, "95%": 1}


def test_push_uploads_the_saved_folder(finished_run, hub, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    assert main(["publish", str(run), "--revision", "v1"]) == 0
    assert hub.state.repos["alice/tiny-mrl"]["name"] == "tiny-mrl"
    arrived = hub.state.files[("alice/tiny-mrl", "v1")]
    local = {p.relative_to(run / "model").as_posix(): p.read_bytes() for p in (run / "model").rglob("*") if p.is_file()}
    assert arrived == local
    assert all(t == "Bearer hf_test_token" for t in hub.state.tokens)
    assert json.loads((run / "results.json").read_text())["publish"]["repo_id"] == "alice/tiny-mrl"


def test_publish_can_change_the_default_dimension(finished_run, hub, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    assert main(["publish", str(run), "--truncate-dim", "8"]) == 0
    assert hub.state.files[("alice/tiny-mrl", "main")]["config_sentence_transformers.json"].count(b'"truncate_dim": 8') == 1
    assert b"mrl_truncate_dim: 8" in hub.state.files[("alice/tiny-mrl", "main")]["README.md"]


def test_failed_upload_keeps_model_and_says_how_to_retry(finished_run, hub, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    hub.state.fail_commit = 403
    assert main(["publish", str(run)]) == 1
    err = capsys.readouterr().err
    assert "failed" in err and f"mrl-run publish {run}" in err and "intact" in err and "Traceback" not in err
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    hub.state.fail_commit = None
    assert main(["publish", str(run)]) == 0  # the retry works


def test_push_without_token_fails_at_validation(tiny_recipe, monkeypatch, tmp_path):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))
    recipe = tiny_recipe('[publish]\npush = true\nrepo_id = "alice/x"\n')
    with pytest.raises(RecipeError) as info:
        load_recipe(recipe)
    assert any("no Hugging Face token found" in p for p in info.value.problems)
    assert main([str(recipe)]) == 2 and not (tmp_path / "out").exists()  # nothing trained


def test_push_true_needs_repo_id_and_truncate_dim_in_range(tiny_recipe, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "x")
    with pytest.raises(RecipeError) as info:
        load_recipe(tiny_recipe("[publish]\npush = true\ntruncate_dim = 64\n"))
    joined = "\n".join(info.value.problems)
    assert "[publish] repo_id: required when push = true" in joined
    assert "[publish] truncate_dim: must be between 1 and the model's dimension 32" in joined


def test_push_during_run_goes_to_the_hub(tiny_recipe, hub, tmp_path):
    recipe = tiny_recipe('[publish]\npush = true\nrepo_id = "alice/run-push"\ntruncate_dim = "recommended"\n')
    assert main([str(recipe), "-q"]) == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["publish"]["commit_url"].endswith("/alice/run-push/commit/abc123")
    assert results["publish"]["truncate_dim"] == results["publish"]["recommended_dims"]["99%"]
    assert "model.safetensors" in hub.state.files[("alice/run-push", "main")]
