"""Recipe validation: every problem collected, located, explained; exit code 2 from the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from mrl_plugins.cli import main
from mrl_plugins.errors import RecipeError, UserError
from mrl_plugins.recipe import apply_override, load_recipe

ROOT = Path(__file__).resolve().parents[1]


def problems_of(path, *overrides) -> list[str]:
    with pytest.raises(RecipeError) as info:
        load_recipe(path, overrides)
    return info.value.problems


def test_quickstart_recipe_validates():
    recipe = load_recipe(ROOT / "recipes" / "quickstart.toml")
    assert recipe.full_dim == 384
    assert recipe.model.origin.startswith("packaged")
    assert recipe.dims.build().dims(384) == [384, 192, 96, 48]
    assert recipe.row_format == "pairs"


def test_valid_tiny_recipe_and_defaults(tiny_recipe):
    recipe = load_recipe(tiny_recipe())
    assert recipe.full_dim == 32
    assert recipe.settings.eval.k == 10
    resolved = recipe.resolved()
    assert resolved["loss"] == {"name": "mnr", "scale": 20.0}
    assert resolved["train"]["max_steps"] == 3


def test_syntax_error_reports_line_and_column_and_exits_2(write_recipe, capsys):
    path = write_recipe('name = "x"\n[model]\nname = \n')
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "TOML syntax error" in err and "line 3" in err and "column" in err
    assert "Traceback" not in err


def test_unknown_keys_wrong_types_all_collected(tiny_recipe):
    path = tiny_recipe("[eval]\nkk = 5\n")
    text = path.read_text().replace("epochs = 1", "epochs = 'one'\nlearnig_rate = 0.1").replace("seed = 1", "seed = 1\nsede = 2")
    path.write_text(text)
    problems = problems_of(path)
    joined = "\n".join(problems)
    assert "[train] epochs: Input should be a valid number" in joined
    assert "[train] learnig_rate: unknown key; did you mean 'learning_rate'?" in joined
    assert "[eval] kk: unknown key; did you mean 'k'?" in joined
    assert "sede: unknown key; did you mean 'seed'?" in joined
    assert len(problems) == 4


def test_component_params_validated_by_component_schema(tiny_recipe):
    path = tiny_recipe()
    path.write_text(path.read_text().replace('name = "mnr"', 'name = "mnr"\nscale = -1\nmargin = 2'))
    joined = "\n".join(problems_of(path))
    assert "[loss] scale: Input should be greater than 0 (got -1)" in joined
    assert "[loss] margin: unknown key" in joined and "Allowed keys: scale" in joined


def test_unknown_component_suggests_closest(tiny_recipe):
    path = tiny_recipe(loss="mnrr")
    (problem,) = problems_of(path)
    assert "[loss] name: unknown loss 'mnrr'; did you mean 'mnr'? Available: cosent, mnr." in problem


def test_loss_data_mismatch(tiny_recipe):
    (problem,) = problems_of(tiny_recipe(loss="cosent"))
    assert "'cosent' trains on scored-pairs rows, but data source 'local' produces pairs" in problem
    assert "(mnr)" in problem


@pytest.mark.parametrize(
    ("dims", "message"),
    [
        ("values = [32, 8, 16]", "[dims] values: must be strictly descending, got [32, 8, 16]"),
        ("values = [64, 32]", "[dims] values: 64 is larger than the model's dimension 32"),
        ("values = [16, 8]", "[dims] values: must start with the model's full dimension 32 (got 16)"),
        ("values = [32, 16]\nweights = [1.0]", "weights has 1 entries but values has 2"),
    ],
)
def test_dimension_schedule_errors(tiny_recipe, dims, message):
    joined = "\n".join(problems_of(tiny_recipe(dims=dims)))
    assert message in joined


def test_halving_schedule(tiny_recipe):
    recipe = load_recipe(tiny_recipe(dims=""), ["dims.name=halving", "dims.floor=8"])
    assert recipe.dims.build().dims(32) == [32, 16, 8]
    assert recipe.dims.build().dims(384) == [384, 192, 96, 48, 24, 12]


def test_missing_file_and_missing_sections(write_recipe):
    path = write_recipe('[model]\nname = "x"\n[data]\nname = "debian"\npath = "nope.xz"\n')
    joined = "\n".join(problems_of(path))
    assert "[data] path: file 'nope.xz' not found" in joined
    assert "[loss]: required table is missing; add it with a 'name' key." in joined
    assert "[dims]: required table is missing" in joined


def test_overrides(tiny_recipe):
    recipe = load_recipe(tiny_recipe(), ["train.epochs=2", "train.learning_rate=1e-4", "name=other"])
    assert recipe.settings.train.epochs == 2.0
    assert recipe.settings.train.learning_rate == 1e-4
    assert recipe.settings.name == "other"
    raw = {"compare": [{"name": "truncate"}]}
    apply_override(raw, "compare.0.model=tuned")
    assert raw == {"compare": [{"name": "truncate", "model": "tuned"}]}
    with pytest.raises(UserError, match="expected KEY=VALUE"):
        apply_override(raw, "train.epochs")


def test_cli_reports_all_problems_in_one_message_exit_2(tiny_recipe, capsys):
    path = tiny_recipe(loss="mnrr", dims="values = [8, 16]")
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "2 problems" in err and "mnrr" in err and "strictly descending" in err
    assert "Traceback" not in err


def test_missing_recipe_file_exit_2(capsys, tmp_path):
    assert main(["validate", str(tmp_path / "none.toml")]) == 2
    assert "recipe file not found" in capsys.readouterr().err
