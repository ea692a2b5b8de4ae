"""The evidence side: columns identified by their parameters, decisions as pure functions over
typed results, older results files, and a third party's engine reaching every reader."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mrl_plugins.cli import main
from mrl_plugins.errors import UserError
from mrl_plugins.evidence import decisions
from mrl_plugins.evidence.results import SCHEMA_VERSION, RunResults, column_key
from mrl_plugins.evidence.rundir import RunDir, column_folder
from mrl_plugins.recipe.load import load_recipe
from mrl_plugins.testkit.recipes import run_recipe, toy_pairs, write_jsonl

HERE = Path(__file__).parent
V02 = HERE / "data" / "run-v0.2"


@pytest.fixture(scope="module")
def plugin_run(tmp_path_factory, tiny_model_dir) -> Path:
    """A tiny run with a third party's index backend in a funnel and two comparisons that score
    themselves (plain means; means with per-query scores, relabelled)."""
    from mrl_plugins.testkit.recipes import RecipeBuilder

    tmp = tmp_path_factory.mktemp("plugin-run")
    write_jsonl(tmp / "pairs.jsonl", toy_pairs())
    shutil.copy(HERE / "third_party_plugin.py", tmp / "third_party_plugin.py")
    data = {"name": "local", "path": "pairs.jsonl", "format": "pairs", "eval_queries": 20, "corpus_size": 60}
    recipe = RecipeBuilder.tiny(tiny_model_dir, data, output_dir=tmp / "out", dims={"name": "explicit", "values": [32, 16, 8]})
    recipe.set("plugins", ["third_party_plugin.py"])
    recipe.add_comparison("funnel", index="brute", shortlist=[10, 20])
    recipe.add_comparison("own-scores").add_comparison("own-scores", per_query=True, label="self-scored")
    run_recipe(recipe.write(tmp / "recipe.toml"), "-q").assert_success()
    return tmp / "out"


# -- identity ------------------------------------------------------------------------------------
def test_a_key_is_the_component_its_reads_and_its_parameters():
    assert column_key("funnel", ["mrl"], {"shortlist": 100, "index": "hnsw"}) == "funnel(mrl, index=hnsw, shortlist=100)"
    assert column_key("pca", ["base"], {}) == "pca(base)"
    assert column_folder("adaptor(mrl)") == "adaptor-mrl"
    long = column_key("funnel", ["mrl"], {"index_params": {"m": 48, "ef_search": 256, "ef_construction": 80}})
    assert len(column_folder(long)) <= 60 and column_folder(long) != column_folder(long.replace("48", "32"))


def test_renaming_a_label_changes_no_key_and_no_folder(plugin_run):
    results = RunDir.open(plugin_run).results()
    column = results.models["own-scores(mrl, per_query=true)"]
    assert column.label == "self-scored" and column.params["per_query"] is True
    assert (RunDir(plugin_run).comparison(column.key) / "note.txt").is_file()
    # the same recipe with another label (and a parameter that only says how it is measured) validates to the same key
    import tomllib

    import tomli_w

    table = tomllib.loads((plugin_run.parent / "recipe.toml").read_text())
    for entry in table["compare"]:
        if entry.get("label") == "self-scored":
            entry["label"], entry["note"] = "renamed", "another note"
    (plugin_run.parent / "renamed.toml").write_text(tomli_w.dumps(table))
    keys = {c.label: c.key for c in load_recipe(plugin_run.parent / "renamed.toml").compare}
    assert keys["renamed"] == column.key and "self-scored" not in keys


# -- intervals -----------------------------------------------------------------------------------
def test_a_plugin_returning_plain_means_is_told_it_has_no_intervals_and_per_query_scores_get_them(plugin_run):
    results = RunDir.open(plugin_run).results()
    plain, scored = results.models["own-scores(mrl)"], results.models["own-scores(mrl, per_query=true)"]
    assert plain.intervals is None and plain.p_vs_mrl is None and "without per-query scores" in plain.no_intervals
    assert scored.intervals and scored.p_vs_mrl and scored.no_intervals is None
    # the same ranking as MRL's own truncation: the same means, and no difference the test could find
    own = {d: {m: v for m, v in by.items() if m != "overlap@10"} for d, by in results.models["mrl"].metrics.items()}
    assert scored.metrics == plain.metrics == own
    assert all(p["mrr@10"] == 1.0 for p in scored.p_vs_mrl.values())
    report = (plugin_run / "report.md").read_text()
    assert "No intervals or tests for MRL · own-scores: its plugin returned means without per-query scores" in report


# -- a third party's engine --------------------------------------------------------------------------
def test_a_third_party_backend_measures_its_funnel_and_reaches_the_report(plugin_run):
    results = RunDir.open(plugin_run).results()
    funnel = results.models["funnel(mrl, index=brute, shortlist=20)"]
    assert funnel.label == "MRL · funnel (brute) 20" and funnel.params["index"] == "brute"
    points = [p for p in decisions.operating_points(results) if p.component == "funnel"]
    # its own settings, and the full-width baselines measured beside them
    assert {(p.index, p.shortlist) for p in points} == {("brute", 10), ("brute", 20), ("binary", 20), ("hnsw", 20)}
    assert "MRL · funnel (brute) 20" in (plugin_run / "report.md").read_text()
    # served through it when it is the cheapest that keeps the quality: the card names it, from its parameters
    from mrl_plugins.present.card import card_section

    for column in [*results.models.values(), *results.validation.values()]:  # held out and where it is chosen
        if column.kind == "model" or column.params.get("index") != "brute":
            column.costs = None  # leave its funnels as the only measured configurations
        else:  # and clearly faster than exact search (a setting that is not is never the one to serve)
            column.costs = {d: c.model_copy(update={"ratio_single": 0.5}) for d, c in column.costs.items()}
    choice = decisions.serving_choice(results)
    assert choice is not None and choice[1].index == "brute"
    assert f"--dim {choice[1].dim} --index brute`" in card_section(results, None, "alice/x")


@pytest.fixture
def installed(monkeypatch):
    """The third-party plugin as if pip-installed (an entry point of the group mrl_plugins)."""
    from mrl_plugins import plugins

    from . import third_party_plugin

    original = plugins._load_entry_points

    def with_plugin(registry):
        original(registry)
        registry.add_plugin(third_party_plugin, "third-party-plugin", "entry point", "1.0")

    monkeypatch.setattr(plugins, "_load_entry_points", with_plugin)


def test_a_third_party_backend_serves_index_quantize_and_the_demo(plugin_run, tmp_path, installed, capsys):
    from mrl_plugins.present.demo import DemoData, SideBySide

    corpus = write_jsonl(tmp_path / "c.jsonl", [{"text": r["positive"]} for r in toy_pairs(40)])
    assert main(["index", str(plugin_run), str(corpus), "-o", str(tmp_path / "i"), "--dim", "8", "--index", "brute"]) == 0
    assert main(["index", str(plugin_run), str(corpus), "-o", str(tmp_path / "q"), "--dim", "8", "--index", "brute",
                 "--quantize", "int8"]) == 0
    manifest = json.loads((tmp_path / "q" / "manifest.json").read_text())
    assert manifest["index"] == {"name": "brute", "params": {"bits": 8}, "provided_by": {
        "plugin": "third-party-plugin", "distribution": None, "version": "1.0"}}  # what to install, if missing
    assert main(["index", str(plugin_run), str(corpus), "-o", str(tmp_path / "x"), "--index", "brute",
                 "--quantize", "binary"]) == 2
    assert "--index brute --quantize int8" in capsys.readouterr().err
    assert main(["search", str(tmp_path / "q"), toy_pairs(40)[3]["positive"], "--json"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[0])["hits"][0]["text"] == toy_pairs(40)[3]["positive"]
    searcher = SideBySide(DemoData.from_run(plugin_run))
    assert "brute" in searcher.settings
    view = searcher.search("mrl", toy_pairs(30)[3]["positive"], 8, "brute", shortlist=60)
    assert [h.row for h in view.chosen] == [h.row for h in view.full]  # shortlist = corpus: the full search


def test_indexing_a_run_takes_its_width_from_the_decision_and_the_exact_backend(plugin_run, tmp_path):
    corpus = write_jsonl(tmp_path / "c.jsonl", [{"text": r["positive"]} for r in toy_pairs(40)])
    assert main(["index", str(plugin_run), str(corpus), "-o", str(tmp_path / "i"), "--setting", "run"]) == 0
    manifest = json.loads((tmp_path / "i" / "manifest.json").read_text())
    results = RunDir.open(plugin_run).results()
    assert manifest["shortlist_dim"] == decisions.index_width(results)
    setting = decisions.index_setting(results)  # no --index: the serving choice's backend, else the exact one
    assert manifest["index"]["name"] == (setting.index if setting is not None and setting.component == "funnel"
                                         else "flat")


# -- older results -------------------------------------------------------------------------------
def test_a_run_of_0_2_loads_rereports_and_its_decisions_read_parameters(tmp_path):
    results = RunResults.load(V02 / "results.json")
    assert results.schema_version == SCHEMA_VERSION and "compare:MRL · funnel 10 hnsw → 16" in results.models
    funnel = results.models["compare:MRL · funnel 10 hnsw → 16"]
    assert funnel.params == {"shortlist": 10, "index": "hnsw", "rerank_dim": 16}
    assert results.models["compare:MRL · quantize binary + rescore"].params == {"precision": "binary", "rescore": True}
    points = {(p.component, p.shortlist, p.index) for p in decisions.operating_points(results)}
    assert {("funnel", 10, "hnsw"), ("funnel", 40, "hnsw"), ("quantize", None, "binary")} <= points
    run = tmp_path / "old"
    shutil.copytree(V02, run)
    assert main(["report", str(run)]) == 0
    assert "MRL · funnel 40 hnsw → 16" in (run / "report.md").read_text()


def test_decisions_are_pure_functions_of_the_results():
    results = RunResults.load(V02 / "results.json")
    before = results.to_json()
    widths = decisions.recommended_widths(results)
    assert set(widths) == {0.99, 0.95} and all(d in results.dims for d in widths.values())
    assert widths[0.95] <= widths[0.99] and decisions.index_width(results) == widths[0.95]
    choice = decisions.serving_choice(results)
    assert choice is not None and choice[1].kept >= choice[0] - 1e-9
    servable = [p for p in decisions.pareto_front(results)
                if p.kept >= choice[0] - 1e-9 and not p.not_faster_than_exact(results.full_dim)]
    cheapest = min(servable, key=lambda p: (p.index_bytes, p.ratio_single))
    assert choice[1] == cheapest and results.to_json() == before  # nothing read was changed


def test_the_front_holds_exactly_the_points_no_other_beats_on_every_axis():
    results = RunResults.load(V02 / "results.json")
    points, front = decisions.operating_points(results), decisions.pareto_front(results)
    assert front and set(front) <= set(points)
    for p in points:
        beaten = any(decisions.dominates(q, p) for q in points)
        assert (p in front) == (not beaten)
    for a in front:  # nothing on the front beats anything else on it
        assert not any(decisions.dominates(b, a) for b in front)


def test_when_truncation_loses_the_choice_is_a_full_width_setting_and_the_report_says_so(tmp_path):
    from mrl_plugins.present.costs import front_sentence
    from mrl_plugins.present.sections import choices

    def planted(truncation_costs_more: bool) -> RunResults:
        """The 0.2 run with one side made dearer: the truncated settings (as measured they also lose
        quality), or the full-width ones (and the truncated given their full-width quality and half
        exact search's time)."""
        results = RunResults.load(V02 / "results.json")
        full = results.full_dim
        for column in results.search_columns().values():
            for d, cost in column.costs.items():
                if (d < full) == truncation_costs_more:
                    column.costs[d] = cost.model_copy(update={"index_bytes": 10_000.0, "ratio_single": 50.0})
                elif d < full:  # and clearly faster than exact search, as a setting to serve must be
                    column.metrics[d] = dict(column.metrics[full])
                    column.costs[d] = cost.model_copy(update={"ratio_single": min(cost.ratio_single, 0.5)})
        return results

    results = planted(truncation_costs_more=False)
    full = results.full_dim
    assert decisions.truncation_on_front(results)
    choice = decisions.serving_choice(results)
    assert choice is not None and choice[1].dim < full
    assert front_sentence(results).startswith("Truncation pays")
    results = planted(truncation_costs_more=True)
    assert not decisions.truncation_on_front(results)
    choice = decisions.serving_choice(results)
    assert choice is not None and choice[1].dim == full
    sentence = front_sentence(results)
    assert sentence.startswith("No configuration that truncates is on the Pareto front")
    assert sentence in choices(results).lines
    run = tmp_path / "planted"
    shutil.copytree(V02, run)
    (run / "results.json").write_text(results.to_json())
    assert main(["report", str(run)]) == 0
    assert "truncation does not pay here" in (run / "report.md").read_text()


def test_opening_something_that_is_not_a_finished_run_is_one_clear_error(tmp_path):
    from mrl_plugins.errors import UserError

    with pytest.raises(UserError, match="no such folder"):
        RunDir.open(tmp_path / "nothing")
    (tmp_path / "f").write_text("x")
    with pytest.raises(UserError, match="a file, not a run folder"):
        RunDir.open(tmp_path / "f")
    (tmp_path / ".half.partial").mkdir()
    (tmp_path / "half").mkdir()
    with pytest.raises(UserError, match="mrl-run --resume"):
        RunDir.open(tmp_path / "half")
    assert main(["report", str(tmp_path / "half")]) == 2


# -- sections ------------------------------------------------------------------------------------
def test_every_section_is_defined_once_and_rendered_alike_everywhere(tmp_path):
    from mrl_plugins.present.card import card_section
    from mrl_plugins.present.costs import describe
    from mrl_plugins.present.demo import DemoData
    from mrl_plugins.present.render import console, markdown
    from mrl_plugins.present.sections import report_sections

    results = RunResults.load(V02 / "results.json")
    sections = report_sections(results)
    assert [s.key for s in sections] == ["metric:mrr", "metric:recall", "metric:ndcg", "smallest", "choices",
                                         "costs", "uncertainty", "saved"]
    text, md = console(sections), "\n".join(markdown(sections))
    for section in sections:
        assert (section.console_title or section.title) in text and f"## {section.title}" in md
        for row in section.table.rows if section.table else []:
            assert "  ".join(row) in " ".join(text.split("  ")) or all(cell in text for cell in row)
            assert "| " + " | ".join(row) + " |" in md
        for line in section.lines:
            assert line.replace("`", "").replace("**", "") in text and line in md
    # the card words the serving decision with the report's own sentence; the demo shows the report's sentences
    choice = decisions.serving_choice(results)
    assert choice is not None and describe(choice[1], results) in card_section(results, 16, "alice/x")
    run = tmp_path / "run"
    shutil.copytree(V02, run)
    (run / "model").mkdir()
    demo = DemoData.from_run(run).recommendation()
    costs = next(s for s in sections if s.key == "costs")
    assert all(f"- {line}" in demo for line in costs.lines[:2])


def test_a_trial_written_before_schema_5_keeps_its_scores_in_validation_alone(tmp_path):
    """Schema 4 wrote a sweep trial's validation scores twice (in ``models`` too); they are read back
    as validation scores, and ``models`` (the evaluation set's) is empty, as a trial never scored it."""
    raw = json.loads((V02 / "results.json").read_text())
    upgraded = RunResults.from_json_dict(raw)
    columns = {k: v.model_dump(mode="json") for k, v in upgraded.models.items()}
    trial = {**raw, "schema_version": 4, "models": columns, "validation": columns,
             "trial": {"study": "s", "number": 0, "params": {}}}
    results = RunResults.from_json_dict(trial)
    assert results.models == {} and set(results.validation) == set(columns)
    assert results.scored("validation").value("mrl", 32) == upgraded.value("mrl", 32)
    with pytest.raises(UserError, match="models is empty"):  # a run that is no trial must have measured something
        RunResults.from_json_dict({**trial, "trial": None, "models": {}, "schema_version": SCHEMA_VERSION})
