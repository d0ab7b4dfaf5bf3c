"""The HTML report (harness/report/html.py) of real runs, opened in a real headless Chromium.

Two runs of the canary on the HF engine into one report directory (so the second has a history): a clean one (GSM8K
on 40 questions, the prefill cache suite on 8 prompts), then one through tests/servers/fault_proxy.py whose wrong
answers (60 %, so GSM8K fails its floor of 0.5) are `<script>document.title='pwned'</script>#### -1`. Debian's
chromium, driven by Playwright (no browser download; `HARNESS_CHROMIUM` overrides the path), loads each report.html:
no console error, one verdict row per check of results.json, the plots drawn (inline SVG with a size), and the
injected script shown as text in the failing samples while the page's title stays its own. Without chromium the test
skips saying how to install it, unless HARNESS_REQUIRE_BROWSER=1 (CI: .ci/run installs it), where it fails.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import test_compare
from inner_run_support import assert_clean, fault_proxy, run_inner
from test_compare import project

engine = test_compare.engine  # the canary on the HF engine, one per module

SCRIPT = "<script>document.title='pwned'</script>"
CACHE_SUITE = (Path(__file__).resolve().parents[1] / "suites" / "test_logprob_prefill_cache_hit.py").read_text()


def chromium() -> str:
    path = os.environ.get("HARNESS_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if path:
        return path
    message = "Debian's chromium is not installed (apt-get install chromium); set HARNESS_CHROMIUM to another build"
    if os.environ.get("HARNESS_REQUIRE_BROWSER") == "1":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def reports(tmp_path_factory, engine):
    root = project(tmp_path_factory.mktemp("html") / "p")
    (root / "suites" / "test_logprob_prefill_cache_hit.py").write_text(CACHE_SUITE)
    thresholds = (root / "thresholds.yaml").read_text()
    thresholds = thresholds.replace("suites: [gsm8k]", "suites: [gsm8k, logprob_prefill_cache_hit]").replace(
        "      gsm8k: {",
        "      logprob_prefill_cache_hit: {source: canary, num_samples: 8, max_prompt_tokens: 200, max_new_tokens: 8}\n"
        "      gsm8k: {",
    )
    thresholds += "  logprob_prefill_cache_hit:\n    canary: [{metric: kl_div, max: 0.01, provenance: test}]\n"
    (root / "thresholds.yaml").write_text(thresholds)
    clean = run_inner(root, "--harness-base-url", engine.base_url, "--harness-limit", "40")
    assert_clean(clean)
    first = sorted(p for p in (root / "reports").iterdir() if p.is_dir())
    with fault_proxy(engine.base_url, "wrong-answers", "--rate", "60", "--wrong-text", SCRIPT + "#### -1") as url:
        faulty = run_inner(root, "--harness-base-url", url, "--harness-limit", "40", "-k", "gsm8k")
    assert_clean(faulty)
    second = [p for p in sorted((root / "reports").iterdir()) if p.is_dir() and p not in first]
    return {"clean": first[0], "faulty": second[0], "log": faulty.output}


def open_page(path: Path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="the browser extra (pip install '.[browser]')")
    executable = chromium()
    errors: list[str] = []
    manager = sync_api.sync_playwright().start()
    browser = manager.chromium.launch(executable_path=executable, args=["--no-sandbox", "--disable-gpu"])
    page = browser.new_page()
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    return manager, browser, page, errors


def check_rows(run_dir: Path, page) -> None:
    tests = json.loads((run_dir / "results.json").read_text())["tests"]
    assert page.locator("#verdicts tr[data-test]").count() == sum(len(t.get("checks") or [{}]) for t in tests)


def test_the_clean_run_renders_its_table_and_plots_without_console_errors(reports):
    manager, browser, page, errors = open_page(reports["clean"] / "report.html")
    try:
        check_rows(reports["clean"], page)
        assert page.locator("#verdicts tr.pass").count() >= 2
        captions = page.locator("figure.plot figcaption").all_inner_texts()
        assert any("per-prompt KL" in c for c in captions), captions
        for svg in page.locator("figure.plot svg").all():
            box = svg.bounding_box()
            assert box and box["width"] > 200 and box["height"] > 50, box
        assert errors == []
    finally:
        browser.close()
        manager.stop()


def test_model_output_with_a_script_is_shown_as_text_and_never_runs(reports):
    html = (reports["faulty"] / "report.html").read_text()
    assert SCRIPT not in html and "&lt;script&gt;document.title=&#x27;pwned&#x27;&lt;/script&gt;" in html
    manager, browser, page, errors = open_page(reports["faulty"] / "report.html")
    try:
        assert page.title().startswith("Validation run ")  # the injected script did not run
        samples = page.locator("tr.sample pre").all_inner_texts()
        assert samples and all(text == SCRIPT + "#### -1" for text in samples), samples
        check_rows(reports["faulty"], page)
        (gsm8k,) = json.loads((reports["faulty"] / "results.json").read_text())["tests"]
        assert gsm8k["verdict"] == "fail"  # below its floor: that check's row is marked, the unjudged ones recorded
        assert page.locator("#verdicts tr.fail").count() == sum(c.get("passed") is False for c in gsm8k["checks"]) == 1
        captions = page.locator("figure.plot figcaption").all_inner_texts()
        assert any("History" in c for c in captions), captions
        assert errors == []
    finally:
        browser.close()
        manager.stop()


def test_the_run_names_its_html_report_in_the_terminal(reports):
    assert f"HTML report: {reports['faulty'] / 'report.html'}" in reports["log"]
