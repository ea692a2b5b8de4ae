"""The staging folder on its own: what is refused, what is kept, what a failure leaves."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from mrl_plugins.errors import UserError
from mrl_plugins.recipe.load import load_recipe
from mrl_plugins.run.staging import Interrupted, Staging, find_resumable, staging_dir

pytestmark = pytest.mark.slow  # trains tiny runs or starts processes: outside the fast lane (-m 'not slow')


def staging_for(tmp_path: Path) -> Staging:
    out = tmp_path / "out"
    return Staging(out, staging_dir(out), Path("recipe.toml"))


def leave_checkpoint(staging: Staging) -> None:
    (staging.checkpoints("mrl") / "checkpoint-5").mkdir(parents=True)


def test_layout(tmp_path):
    s = staging_for(tmp_path)
    assert s.dir == tmp_path / ".out.partial"
    assert s.model_dir("mrl") == s.dir / "model" and s.model_dir("no-mrl") == s.dir / "variants" / "no-mrl"
    assert s.done_marker("no-mrl") == s.dir / "trained" / "no-mrl.json"


def test_prepare_refuses_what_the_user_has(tmp_path):
    s = staging_for(tmp_path)
    s.out.mkdir()
    (s.out / "mine.txt").write_text("mine")
    with pytest.raises(UserError, match="is not empty; nothing was changed"):
        s.prepare(overwrite=False, resume=False)
    assert (s.out / "mine.txt").read_text() == "mine" and not s.dir.exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="exists and is a file"):
        Staging(tmp_path / "file", staging_dir(tmp_path / "file"), Path("r.toml")).prepare(overwrite=True, resume=False)


def test_prepare_keeps_checkpoints_unless_told(tmp_path):
    s = staging_for(tmp_path)
    leave_checkpoint(s)
    with pytest.raises(UserError, match="--resume"):
        s.prepare(overwrite=False, resume=False)
    s.prepare(overwrite=False, resume=True)
    assert s.has_resumable_state()
    s.prepare(overwrite=True, resume=False)
    assert s.dir.is_dir() and not s.has_resumable_state()


def test_finalize_drops_scratch_and_replaces_the_old_output_last(tmp_path):
    s = staging_for(tmp_path)
    s.out.mkdir()
    (s.out / "old.txt").write_text("old")
    s.prepare(overwrite=True, resume=False)
    (s.dir / "results.json").write_text("{}")
    leave_checkpoint(s)
    assert (s.out / "old.txt").exists()  # untouched until the run is complete
    s.finalize()
    assert sorted(p.name for p in s.out.iterdir()) == ["results.json"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_guard_on_failure(tmp_path):
    s = staging_for(tmp_path)
    s.prepare(overwrite=False, resume=False)
    with pytest.raises(UserError), s.guard(is_main=True):  # a mistake, nothing to resume: nothing left
        raise UserError("bad")
    assert not s.dir.exists()

    s.prepare(overwrite=False, resume=False)
    leave_checkpoint(s)
    with pytest.raises(Interrupted, match="--resume") as info, s.guard(is_main=True):
        raise KeyboardInterrupt
    assert info.value.exit_code == 130 and s.has_resumable_state()

    with pytest.raises(RuntimeError), s.guard(is_main=True):  # a bug keeps what can be resumed
        raise RuntimeError("boom")
    assert s.has_resumable_state()

    with pytest.raises(UserError), s.guard(is_main=False):  # other ranks never clean up
        raise UserError("bad")
    assert s.dir.exists()


def test_find_resumable_takes_the_newest_interrupted_run(tiny_recipe, recipe_path, tmp_path):
    tiny_recipe.set("output_dir", str(tmp_path / "runs" / "{name}-{timestamp}"))
    recipe = load_recipe(tiny_recipe.write(recipe_path))
    with pytest.raises(UserError, match="no interrupted run"):
        find_resumable(recipe)
    older, newer = tmp_path / "runs" / ".tiny-1.partial", tmp_path / "runs" / ".tiny-2.partial"
    older.mkdir(parents=True)
    newer.mkdir()
    now = time.time()
    os.utime(older, (now - 100, now - 100))
    assert find_resumable(recipe) == tmp_path / "runs" / "tiny-2"
