"""Recipe validation: every problem collected, located, explained; exit code 2 from the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from mrl_plugins.errors import RecipeError, UserError
from mrl_plugins.recipe.load import load_recipe
from mrl_plugins.recipe.schema import apply_override
from mrl_plugins.testkit.recipes import run_recipe

ROOT = Path(__file__).resolve().parents[1]


def problems_of(path, *overrides) -> list[str]:
    with pytest.raises(RecipeError) as info:
        load_recipe(path, overrides)
    return info.value.problems


def validate(path):
    return run_recipe(path, command="validate")


def test_quickstart_recipe_validates():
    recipe = load_recipe(ROOT / "recipes" / "quickstart.toml")
    assert recipe.full_dim == 384
    assert recipe.model.origin.startswith("packaged")
    assert recipe.dims.component.dims(384) == [384, 192, 96, 48]
    assert recipe.row_format == "pairs"
    assert recipe.models.labels() == {"base": "base", "mrl": "MRL", "no-mrl": "no-MRL"}
    assert [(c.key, c.label) for c in recipe.compare] == [
        ("pca(base)", "base · PCA"), ("no-mrl", "no-MRL"), ("funnel(mrl)", "MRL · funnel"),
        ("adaptor(mrl)", "MRL · adaptor"),
    ]


def test_valid_tiny_recipe_and_defaults(tiny_recipe, recipe_path):
    recipe = load_recipe(tiny_recipe.write(recipe_path))
    assert recipe.full_dim == 32
    assert recipe.settings.eval.k == 10
    resolved = recipe.resolved()
    assert resolved["loss"] == {"name": "mnr", "scale": 20.0}
    assert resolved["train"]["max_steps"] == 3


def test_syntax_error_reports_line_and_column_and_exits_2(recipe_path):
    recipe_path.write_text('name = "x"\n[model]\nname = \n')
    outcome = validate(recipe_path)
    assert outcome.code == 2
    assert "TOML syntax error" in outcome.err and "line 3" in outcome.err and "column" in outcome.err
    assert "Traceback" not in outcome.err


def test_unknown_keys_wrong_types_all_collected(tiny_recipe, recipe_path):
    tiny_recipe.set("eval.kk", 5).set("train.epochs", "one").set("train.learnig_rate", 0.1).set("sede", 2)
    problems = problems_of(tiny_recipe.write(recipe_path))
    joined = "\n".join(problems)
    assert "[train] epochs: Input should be a valid number" in joined
    assert "[train] learnig_rate: unknown key; did you mean 'learning_rate'?" in joined
    assert "[eval] kk: unknown key; did you mean 'k'?" in joined
    assert "sede: unknown key; did you mean 'seed'?" in joined
    assert len(problems) == 4


def test_component_params_validated_by_component_schema(tiny_recipe, recipe_path):
    joined = "\n".join(problems_of(tiny_recipe.set("loss.scale", -1).set("loss.margin", 2).write(recipe_path)))
    assert "[loss] scale: Input should be greater than 0 (got -1)" in joined
    assert "[loss] margin: unknown key" in joined and "Allowed keys: scale" in joined


def test_unknown_component_suggests_closest(tiny_recipe, recipe_path):
    (problem,) = problems_of(tiny_recipe.set("loss.name", "mnrr").write(recipe_path))
    assert "[loss] name: unknown loss 'mnrr'; did you mean 'mnr'? Available: cached-mnr, cosent, gist, mnr." in problem


def test_loss_data_mismatch(tiny_recipe, recipe_path):
    (problem,) = problems_of(tiny_recipe.set("loss.name", "cosent").write(recipe_path))
    assert "'cosent' trains on scored-pairs rows, but data source 'local' produces pairs" in problem
    assert "(cached-mnr, gist, mnr)" in problem


@pytest.mark.parametrize(
    ("dims", "message"),
    [
        ({"values": [32, 8, 16]}, "[dims] values: must be strictly descending, got [32, 8, 16]"),
        ({"values": [64, 32]}, "[dims] values: 64 is larger than the model's dimension 32"),
        ({"values": [16, 8]}, "[dims] values: must start with the model's full dimension 32 (got 16)"),
        ({"values": [32, 16], "weights": [1.0]}, "weights has 1 entries but values has 2"),
    ],
)
def test_dimension_schedule_errors(tiny_recipe, recipe_path, dims, message):
    tiny_recipe.set("dims", {"name": "explicit", **dims})
    assert message in "\n".join(problems_of(tiny_recipe.write(recipe_path)))


def test_halving_schedule(tiny_recipe, recipe_path):
    recipe = load_recipe(tiny_recipe.set("dims", {"name": "halving", "floor": 8}).write(recipe_path))
    assert recipe.dims.component.dims(32) == [32, 16, 8]
    assert recipe.dims.component.dims(384) == [384, 192, 96, 48, 24, 12]


def test_missing_file_and_missing_sections(recipe_path):
    recipe_path.write_text('[model]\nname = "x"\n[data]\nname = "debian"\npath = "nope.xz"\n')
    joined = "\n".join(problems_of(recipe_path))
    assert "[data] path: file 'nope.xz' not found" in joined
    assert "[loss]: required table is missing; add it with a 'name' key." in joined
    assert "[dims]: required table is missing" in joined


def test_overrides(tiny_recipe, recipe_path):
    recipe = load_recipe(tiny_recipe.write(recipe_path), ["train.epochs=2", "train.learning_rate=1e-4", "name=other"])
    assert recipe.settings.train.epochs == 2.0
    assert recipe.settings.train.learning_rate == 1e-4
    assert recipe.settings.name == "other"
    raw = {"compare": [{"name": "truncate"}]}
    apply_override(raw, "compare.0.model=mrl")
    assert raw == {"compare": [{"name": "truncate", "model": "mrl"}]}
    with pytest.raises(UserError, match="expected KEY=VALUE"):
        apply_override(raw, "train.epochs")


def test_cli_reports_all_problems_in_one_message_exit_2(tiny_recipe, recipe_path):
    tiny_recipe.set("loss.name", "mnrr").set("dims.values", [8, 16])
    outcome = validate(tiny_recipe.write(recipe_path))
    assert outcome.code == 2
    assert "2 problems" in outcome.err and "mnrr" in outcome.err and "strictly descending" in outcome.err
    assert "Traceback" not in outcome.err


def test_missing_recipe_file_exit_2(tmp_path):
    outcome = validate(tmp_path / "none.toml")
    assert outcome.code == 2 and "recipe file not found" in outcome.err


# -- the run's models: one namespace, checked before anything trains ---------------------------
def test_comparison_reading_a_model_the_run_will_not_have_fails_validate(tiny_recipe, recipe_path, tmp_path):
    tiny_recipe.add_comparison("pca", model="no-mrl").add_comparison("truncate", model="mrl-plain")
    outcome = validate(tiny_recipe.write(recipe_path))
    assert outcome.code == 2 and "Traceback" not in outcome.err
    assert "[[compare]] #1 model: model 'no-mrl' is not a model of this run" in outcome.err
    assert "This run will have: base, mrl (MRL)." in outcome.err
    assert 'Add a [[compare]] table with name = "no-mrl"' in outcome.err
    assert "[[compare]] #2 model: model 'mrl-plain'" in outcome.err and "[warm_start]" in outcome.err
    # the run refuses before anything is trained or written
    assert run_recipe(recipe_path).code == 2 and not (tmp_path / "out").exists()


def test_old_names_of_the_fine_tuned_model_point_at_its_key(tiny_recipe, recipe_path):
    (problem,) = problems_of(tiny_recipe.add_comparison("truncate", model="tuned").write(recipe_path))
    assert "The fine-tuned model is called 'mrl'" in problem


def test_the_namespace_follows_the_recipe(tiny_recipe, recipe_path, tiny_model_dir):
    tiny_recipe.set("warm_start", {"name": "pca-rotation"}).add_comparison("no-mrl")
    tiny_recipe.add_comparison("pca", model="mrl-plain").add_comparison("truncate", model=str(tiny_model_dir))
    recipe = load_recipe(tiny_recipe.write(recipe_path))
    assert recipe.models.labels() == {"base": "base", "mrl-plain": "MRL", "mrl": "MRL + pca-rotation", "no-mrl": "no-MRL"}
    assert [m.key for m in recipe.models.trained()] == ["mrl", "mrl-plain", "no-mrl"]
    assert [c.label for c in recipe.compare] == ["no-MRL", "MRL · PCA", f"{tiny_model_dir} · truncate"]
    assert list(recipe.external_models()) == [str(tiny_model_dir)]


def test_two_comparisons_giving_the_same_column_are_refused(tiny_recipe, recipe_path):
    tiny_recipe.add_comparison("pca", label="mine").add_comparison("pca", label="yours")
    (problem,) = problems_of(tiny_recipe.write(recipe_path))
    assert "[[compare]] #2: measures the same thing as [[compare]] #1 (pca(base))" in problem


def test_two_columns_shown_alike_must_be_told_apart_by_a_label(tiny_recipe, recipe_path):
    tiny_recipe.add_comparison("pca").add_comparison("pca", max_fit_texts=10)
    (problem,) = problems_of(tiny_recipe.write(recipe_path))
    assert "[[compare]] #2: would be shown as 'base · PCA' like [[compare]] #1" in problem
    assert "pca(base, max_fit_texts=10)" in problem and 'label = "…"' in problem
    tiny_recipe.table["compare"][1]["label"] = "base · PCA (10 texts)"
    recipe = load_recipe(tiny_recipe.write(recipe_path))
    assert [(c.key, c.label) for c in recipe.compare] == [("pca(base)", "base · PCA"),
                                                          ("pca(base, max_fit_texts=10)", "base · PCA (10 texts)")]
    assert recipe.resolved()["compare"][1]["label"] == "base · PCA (10 texts)"


def test_a_folder_that_is_not_a_model_is_refused(tiny_recipe, recipe_path, tmp_path):
    (tmp_path / "not-a-model").mkdir()
    (problem,) = problems_of(tiny_recipe.add_comparison("truncate", model="not-a-model").write(recipe_path))
    assert "is a folder" in problem and "not a sentence-transformers model" in problem
