"""`mrl-run demo`: the page's functions without a browser, its bad inputs, and the page itself in
a real browser (Debian's chromium, driven by Selenium through Debian's chromium-driver)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mrl_plugins.present.demo import DemoData, SideBySide, render_hits, render_summary
from mrl_plugins.testkit.recipes import RecipeBuilder, run_recipe, toy_pairs, write_jsonl
from mrl_plugins.testkit.required import missing

pytestmark = pytest.mark.slow  # trains tiny runs or starts processes: outside the fast lane (-m 'not slow')

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory, tiny_model_dir) -> Path:
    """A finished tiny run with the no-MRL control and a funnel, shared by this module."""
    tmp = tmp_path_factory.mktemp("demo")
    write_jsonl(tmp / "pairs.jsonl", toy_pairs(300))
    data = {"name": "local", "path": "pairs.jsonl", "eval_queries": 40, "corpus_size": 200}
    recipe = RecipeBuilder.tiny(tiny_model_dir, data, output_dir=tmp / "out", dims={"name": "explicit", "values": [32, 16, 8]})
    recipe.add_comparison("no-mrl").add_comparison("funnel", shortlist=[10, 20])
    run_recipe(recipe.write(tmp / "recipe.toml"), "-q").assert_success()
    return tmp / "out"


def test_the_page_offers_the_runs_models_corpus_and_examples(demo_run):
    data = DemoData.from_run(demo_run)
    assert {k: m.label for k, m in data.models.items()} == {"base": "base", "mrl": "MRL", "no-mrl": "no-MRL"}
    assert data.documents == 200 and len(data.examples) == 40 and data.dims == [32, 16, 8]
    assert [p.name for p in data.plots()] == ["metrics.png", "costs.png"]
    assert "Cheapest keeping ≥ 99% by memory" in data.recommendation()


def test_moving_the_width_changes_the_chosen_column_but_not_the_full_one(demo_run):
    searcher = SideBySide(DemoData.from_run(demo_run))
    query = searcher.random_example(seed=1)
    views = {d: searcher.search("mrl", query, d) for d in (32, 16, 8)}
    full = [h.row for h in views[32].full]
    assert all([h.row for h in v.full] == full for v in views.values())
    assert [h.row for h in views[32].chosen] == full and views[32].overlap == 10
    assert [h.row for h in views[8].chosen] != full and views[8].overlap < 10
    v = views[8]
    assert v.dropped == 10 - v.overlap and 0 <= v.moved <= v.overlap
    assert sum(h.chosen_rank is None for h in v.full) == v.dropped
    # an example is an evaluation query: its relevant document is marked in both columns
    assert v.example and any(h.relevant for h in views[32].full)
    assert 'data-relevant="1"' in render_hits(views[32].full, "t", "full", False)
    assert f'<span id="overlap-value">{v.overlap}/10</span>' in render_summary(v, 8, 32)


def test_a_funnel_with_the_whole_corpus_as_shortlist_is_the_full_search(demo_run):
    searcher = SideBySide(DemoData.from_run(demo_run))
    query = searcher.random_example(seed=2)
    for setting in ("flat", "int8", "binary"):
        view = searcher.search("mrl", query, 8, setting, shortlist=200)
        assert [h.row for h in view.chosen] == [h.row for h in view.full], setting


def test_a_typed_query_is_encoded_by_the_chosen_model(demo_run, tiny_model_dir):
    from sentence_transformers import SentenceTransformer

    searcher = SideBySide(DemoData.from_run(demo_run))
    assert not searcher.search("base", "audio video tools", 8).example
    for key, folder in (("base", tiny_model_dir), ("mrl", demo_run / "model"), ("no-mrl", demo_run / "variants" / "no-mrl")):
        vector, relevant = searcher.query_vector(key, "audio video tools")
        expected = SentenceTransformer(str(folder), device="cpu").encode_query(["audio video tools"])[0]
        assert relevant is None and np.allclose(vector, expected, atol=1e-6), key


# -- bad input: one message, exit 2 ---------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def demo_cli(*args):
    proc = subprocess.run([sys.executable, "-m", "mrl_plugins.cli", "demo", *map(str, args)],
                          capture_output=True, text=True, timeout=120)
    return proc.returncode, proc.stderr


def test_a_folder_that_is_not_a_finished_run_is_refused(tmp_path):
    code, err = demo_cli(tmp_path, "--port", free_port())
    assert code == 2 and "not a finished run" in err and "Traceback" not in err


def test_a_run_without_a_saved_evaluation_set_is_refused(demo_run, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(demo_run, old, ignore=shutil.ignore_patterns("evaluation"))
    code, err = demo_cli(old, "--port", free_port())
    assert code == 2 and "no saved evaluation set" in err and "Traceback" not in err


def test_a_port_in_use_is_refused(demo_run):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        code, err = demo_cli(demo_run, "--port", taken.getsockname()[1])
    assert code == 2 and "the port is in use" in err and "--port" in err


def test_an_index_built_with_another_model_is_refused(demo_run, tmp_path):
    from mrl_plugins.cli import main
    from mrl_plugins.testkit.models import tiny_model

    corpus = write_jsonl(tmp_path / "c.jsonl", [{"text": r["positive"]} for r in toy_pairs(30)])
    other = tiny_model(tmp_path / "other", seed=5)
    assert main(["index", str(other), str(corpus), "-o", str(tmp_path / "idx"), "--dim", "8"]) == 0
    code, err = demo_cli(demo_run, "--index", tmp_path / "idx", "--port", free_port())
    assert code == 2 and "which is none of the run's models" in err and "Traceback" not in err
    # built from the run, the same index is served, with the run's MRL model
    assert main(["index", str(demo_run), str(corpus), "-o", str(tmp_path / "ok"), "--dim", "8"]) == 0
    data = DemoData.from_run(demo_run, tmp_path / "ok")
    assert list(data.models) == ["mrl"] and data.documents == 30
    view = SideBySide(data).search("mrl", toy_pairs(30)[3]["positive"], 8, "flat", 20)
    assert view.full[0].text == toy_pairs(30)[3]["positive"]


# -- the page, in a real browser -------------------------------------------------------------------
@pytest.fixture
def browser(tmp_path):
    if not (CHROMIUM and CHROMEDRIVER):
        missing("MRL_REQUIRE_BROWSER", "the browser", "chromium or chromium-driver is not installed",
                "apt-get install chromium chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1400,1600", f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    options.binary_location = CHROMIUM
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)  # no driver download
    yield driver
    driver.quit()


@pytest.fixture
def served(demo_run):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "mrl_plugins.cli", "demo", str(demo_run), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None:
                pytest.fail(f"the demo exited: {proc.stdout.read()[-3000:]}")
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("the demo did not start listening within 90 s")
    yield f"http://127.0.0.1:{port}/"
    proc.terminate()
    proc.wait(timeout=30)


def test_the_slider_changes_the_truncated_column_in_a_browser(served, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 60)

    def rows(table):
        return [e.get_attribute("data-row") for e in browser.find_elements(By.CSS_SELECTOR, f"#{table}-table tr[data-row]")]

    browser.get(served)
    query = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#query textarea"))
    query.send_keys("audio video image tools")
    query.send_keys(Keys.ENTER)
    wait.until(lambda d: len(rows("full")) == 10)
    full_before, chosen_full_width = rows("full"), rows("chosen")
    assert chosen_full_width == full_before  # at full width both columns agree
    assert browser.find_element(By.ID, "overlap-value").text == "10/10"

    width = browser.find_element(By.CSS_SELECTOR, "#dim input[type=number]")  # the slider's own number box
    width.send_keys(Keys.CONTROL, "a")
    width.send_keys("8", Keys.ENTER)
    wait.until(lambda d: "at 8 dims" in d.find_element(By.ID, "chosen-table").text)
    assert rows("full") == full_before  # full dimension: unchanged
    assert rows("chosen") != full_before  # 8 of 32 dimensions: changed
    overlap = browser.find_element(By.ID, "overlap-value").text
    assert overlap.endswith("/10") and int(overlap.split("/")[0]) < 10
    browser.save_screenshot(str(tmp_path / "demo-8-dims.png"))

    browser.find_element(By.ID, "example").click()  # an evaluation query: its relevant document is marked
    wait.until(lambda d: "relevant document" in d.find_element(By.ID, "summary-text").text)
    assert browser.find_elements(By.CSS_SELECTOR, "#full-table tr[data-relevant='1']")
    browser.save_screenshot(str(tmp_path / "demo-example.png"))
    assert (tmp_path / "demo-example.png").stat().st_size > 10_000
