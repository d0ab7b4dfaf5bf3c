"""One self-contained HTML page per run, beside summary.md: `<run dir>/report.html`.

    python -m harness report RUN_DIR [--history reports/history.sqlite]    (re-render a finished run)

Read from the run directory only (results.json, samples/*.jsonl, agreement.json, comparison.json) and the history
store: the run's verdict first (counts, the failing and erroring tests with their reasons: harness.report.opening),
how the run was run (harness.report.run_info), one row per test, the table of checks, the cross-config agreement and
baseline comparison, per-suite details, the first failing samples with the model's output, and plots where a person
would rather look than read: each judged metric over the history, the per-prompt KL of the cache suites, the latency
percentiles of serving_perf. Plots are matplotlib SVG inlined in the page (no script, no external resource, so the
file opens anywhere, also offline); without matplotlib (the `report` extra; the GPU image lacks it) the page says so
and carries the rest. Every string from a run, model output above all, goes through `html.escape`.
"""

from __future__ import annotations

import html
import io
import json
from pathlib import Path
from typing import Any

from harness.report.format import bound_text, check_verdict, format_value
from harness.report.opening import VERDICTS, row_id, row_reason, run_verdict, shown_verdict
from harness.report.run_info import describe, git_text

FAILING_SAMPLES = 10  # per samples file
OUTPUT_FIELDS = ("output", "test_output", "response", "resps")
STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f3f3f3}tr.fail td.verdict,tr.error td.verdict{background:#fbe3e3;font-weight:600}
#run-verdict{font-size:1.2em;padding:6px 10px;border-left:6px solid #888}#run-verdict.FAIL{border-color:#d22}
#run-verdict.PASS{border-color:#2a2}
tr.pass td.verdict{background:#e5f5e5}tr.worse td.verdict,tr.still-failing td.verdict{background:#fbe3e3}
tr.skipped td.verdict,tr.recorded td.verdict{background:#f1f1f1}
pre{white-space:pre-wrap;background:#f8f8f8;padding:6px;margin:0;max-height:18em;overflow:auto}
figure{margin:1em 0}figure svg{max-width:100%;height:auto}.muted{color:#777}
"""


def write_html(run_dir: Path, history_db: Path | None = None) -> Path:
    """Render `run_dir`'s report.html (atomically) and return its path."""
    run_dir = Path(run_dir)
    data = json.loads((run_dir / "results.json").read_text())
    page = render(data, run_dir, history_db)
    out = run_dir / "report.html"
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(out)
    return out


def render(data: dict, run_dir: Path, history_db: Path | None) -> str:
    run = data.get("run", {})
    e = html.escape
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>Validation run {e(str(run.get('run_id')))}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>Validation run {e(str(run.get('run_id')))}</h1>",
        *_opening(data),
        f"<p>harness {e(str(run.get('harness_version')))}, git {e(git_text(run))}, started "
        f"{e(str(run.get('started')))}, GPUs {e(', '.join((run.get('gpus') or {}).get('names') or []) or 'none')}</p>",
        f"<p id=run-options>{e(describe(run))}</p>",
    ]
    if run.get("error_control"):
        parts.append(f"<p>{e(run['error_control']['line'])}</p>")
    parts += _servers(data.get("servers", {})) + _tests(data.get("tests", [])) + _verdicts(data.get("tests", []))
    for name, title in (("agreement.json", "Cross-config agreement"), ("comparison.json", "Against the baseline")):
        if (run_dir / name).is_file():
            parts += _comparison(json.loads((run_dir / name).read_text()), title)
    parts += _plots(data, run_dir, history_db)
    parts += _failing_samples(run_dir)
    parts += _details(data.get("tests", []))
    parts.append("</body></html>")
    return "\n".join(parts)


def _opening(data: dict) -> list[str]:
    """The run's verdict, then each failing and erroring test with its reason: what a reader must see first."""
    e, verdict = html.escape, run_verdict(data)
    out = [f"<p id=run-verdict class={e(verdict.word.replace(' ', '-'))}><b>{e(verdict.line)}</b></p>"]
    if verdict.did_not_start:
        out.append(f"<p><b>The run did not start:</b> {e(verdict.did_not_start)}</p>")
    if verdict.first:
        items = "".join(
            f"<li class={e(t['verdict'])}><b>{e(shown_verdict(t))}</b> <code>{e(row_id(t))}</code>: "
            f"{e(row_reason(t))}</li>"
            for t in verdict.first
        )
        out.append(f"<ul id=run-first>{items}</ul>")
    return out


def _tests(tests: list[dict]) -> list[str]:
    """One row per test, failing and erroring first: its verdict and the reason for it."""
    if not tests:
        return []
    ordered = sorted(tests, key=lambda t: VERDICTS.index(t["verdict"]) if t.get("verdict") in VERDICTS[:2] else 2)
    rows = "".join(
        f"<tr class={html.escape(str(t.get('verdict')))} data-test={html.escape(t.get('nodeid', ''), quote=True)}>"
        f"<td>{html.escape(row_id(t))}</td><td class=verdict>{html.escape(shown_verdict(t))}</td>"
        f"<td>{html.escape(row_reason(t))}</td></tr>"
        for t in ordered
    )
    return ["<h2>Tests</h2><table id=tests><tr><th>test</th><th>verdict</th><th>reason</th></tr>", rows, "</table>"]


def _servers(servers: dict) -> list[str]:
    if not servers:
        return []
    rows = "".join(
        f"<tr><td>{html.escape(case)}</td>"
        f"<td>{html.escape(str(s.get('engine', '?')))} {html.escape(str(s.get('version') or ''))}</td>"
        f"<td><code>{html.escape(' '.join(s.get('command') or []) or '(attached)')}</code></td></tr>"
        for case, s in servers.items()
    )
    return ["<h2>Servers</h2><table><tr><th>case</th><th>engine</th><th>command</th></tr>", rows, "</table>"]


def _verdicts(tests: list[dict]) -> list[str]:

    rows = []
    for test in tests:
        verdict = test.get("verdict", "?")
        checks = test.get("checks") or [{}]
        for check in checks:
            message = check.get("message") or test.get("error") or test.get("skipped") or ""
            if not message and check.get("passed") is False:  # a failed check without its own message
                message = row_reason(test)
            shown = (
                check_verdict(test, check).split(":")[0].lower()
                if check and verdict not in ("skipped", "error")
                else verdict
            )
            rows.append(
                f"<tr class={html.escape(shown)} data-test={html.escape(test.get('nodeid', ''), quote=True)}>"
                f"<td>{html.escape(test['case'])}</td><td>{html.escape(test['suite'])}</td>"
                f"<td>{html.escape(str(check.get('metric', '–')))}</td>"
                f"<td>{html.escape(format_value(check.get('observed')))}</td>"
                f"<td>{html.escape(bound_text(check) if check else '–')}</td>"
                f"<td class=verdict>{html.escape(shown)}</td>"
                f"<td>{html.escape(str(message))}</td></tr>"
            )
    counts = {v: sum(t.get("verdict") == v for t in tests) for v in ("pass", "fail", "error", "skipped", "recorded")}
    summary = ", ".join(f"{n} {v}" for v, n in counts.items() if n)
    return [
        f"<h2>Checks</h2><p>{html.escape(summary) or 'no tests'}</p>",
        "<table id=verdicts><tr><th>case</th><th>suite</th><th>metric</th><th>observed</th><th>bound</th>"
        "<th>verdict</th><th>message</th></tr>",
        *rows,
        "</table>",
    ]


def _comparison(record: dict, title: str) -> list[str]:
    rows = "".join(
        f"<tr class={html.escape(str(r.get('verdict')).replace(' ', '-'))}><td>{html.escape(str(r.get('case')))}</td>"
        f"<td>{html.escape(str(r.get('suite')))}</td><td class=verdict>{html.escape(str(r.get('verdict')))}</td>"
        f"<td>{html.escape(str(r.get('line')))}</td></tr>"
        for r in record.get("rows", [])
    )
    return [
        f"<h2>{html.escape(title)}</h2><p>{html.escape(str(record.get('release', '')))}</p>",
        "<table><tr><th>case</th><th>suite</th><th>verdict</th><th>line</th></tr>",
        rows,
        "</table>",
    ]


def _failing_samples(run_dir: Path) -> list[str]:
    out = []
    for path in sorted((run_dir / "samples").glob("*.jsonl")):
        failing = []
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("correct") is False:
                failing.append(record)
        if not failing:
            continue
        out.append(
            f"<h3>{html.escape(path.stem)}: {len(failing)} wrong</h3>"
            "<table><tr><th>id</th><th>expected</th><th>output</th></tr>"
        )
        for record in failing[:FAILING_SAMPLES]:
            text = next((record[f] for f in OUTPUT_FIELDS if f in record), "")
            expected = record.get("label", record.get("answer", ""))
            sample_id = record.get("id", record.get("question_id", record.get("doc_id", "")))
            out.append(
                f"<tr class=sample><td>{html.escape(str(sample_id))}</td><td>{html.escape(str(expected))}</td>"
                f"<td><pre>{html.escape(text if isinstance(text, str) else json.dumps(text))}</pre></td></tr>"
            )
        out.append("</table>")
    return ["<h2>Failing samples</h2>", *out] if out else []


def _details(tests: list[dict]) -> list[str]:
    out = ["<h2>Details</h2>"]
    for test in tests:
        body = {k: test.get(k) for k in ("metrics", "details", "notes", "failures", "client") if test.get(k)}
        if not body:
            continue
        out.append(
            f"<details><summary>{html.escape(test['suite'])}[{html.escape(test['case'])}] — "
            f"{html.escape(test.get('verdict', '?'))}</summary>"
            f"<pre>{html.escape(json.dumps(body, indent=1, default=str)[:20000])}</pre></details>"
        )
    return out


def _plots(data: dict, run_dir: Path, history_db: Path | None) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return ["<h2>Plots</h2><p class=muted>No plots: matplotlib is not installed (pip install '.[report]').</p>"]
    figures = [
        ("History: every judged metric, run by run", _history_figure(plt, history_db)),
        ("Cache suites: per-prompt KL of the hit against its replay", _kl_figure(plt, run_dir)),
        ("serving_perf: latency percentiles per workload (its middle repeat)", _latency_figure(plt, data)),
    ]
    out = ["<h2>Plots</h2>"]
    for title, svg in figures:
        if svg:
            out.append(f"<figure class=plot><figcaption>{html.escape(title)}</figcaption>{svg}</figure>")
    return out if len(out) > 1 else []


def _svg(plt, fig) -> str:
    buffer = io.StringIO()
    with plt.rc_context({"svg.fonttype": "none", "svg.hashsalt": "harness"}):
        fig.savefig(buffer, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buffer.getvalue()
    return text[text.index("<svg") :]  # drop the XML prolog and doctype: inline SVG in HTML


def _history_figure(plt, history_db: Path | None) -> str | None:
    if not history_db or not Path(history_db).is_file():
        return None
    from harness.report.history import UNRECORDED, open_history

    with open_history(history_db) as conn:  # one series per way of running (harness.report.history)
        rows = conn.execute(
            "SELECT r.model || '/' || r.config || ' ' || r.suite || ' ' || r.metric || "
            f"CASE COALESCE(runs.series, '{UNRECORDED}') WHEN '' THEN '' "
            f"ELSE ' [' || COALESCE(runs.series, '{UNRECORDED}') || ']' END, runs.started, r.value, r.passed "
            "FROM results r JOIN runs USING (run_id) WHERE r.passed IS NOT NULL ORDER BY runs.started"
        ).fetchall()
    series: dict[str, list[tuple[str, float, int]]] = {}
    for name, started, value, passed in rows:
        series.setdefault(name, []).append((started, value, passed))
    if not series:
        return None
    names = sorted(series)[:24]
    cols = 3
    fig, axes = plt.subplots(
        (len(names) + cols - 1) // cols, cols, figsize=(11, 1.9 * ((len(names) + cols - 1) // cols)), squeeze=False
    )
    for ax, name in zip(axes.flat, names):
        points = series[name]
        ax.plot(range(len(points)), [p[1] for p in points], color="#555", linewidth=1)
        ax.scatter(
            range(len(points)), [p[1] for p in points], c=["#2a2" if p[2] else "#d22" for p in points], s=14, zorder=3
        )
        ax.set_title(name, fontsize=7)
        ax.set_xticks(range(len(points)), [p[0][5:16].replace("T", " ") for p in points], rotation=30, ha="right")
        ax.tick_params(labelsize=6)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    fig.tight_layout()
    return _svg(plt, fig)


def _kl_figure(plt, run_dir: Path) -> str | None:
    values: dict[str, list[float]] = {}
    for path in sorted((run_dir / "samples").glob("logprob_*_cache_hit__*.jsonl")):
        kl = [r["kl"] for r in map(json.loads, path.read_text().splitlines()) if isinstance(r.get("kl"), (int, float))]
        if kl:
            values[path.stem.replace("logprob_", "").replace("_cache_hit__", " ")] = [max(v, 1e-12) for v in kl]
    if not values:
        return None
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(values) + 1.2))
    ax.boxplot(list(values.values()), orientation="horizontal", tick_labels=list(values))
    ax.set_xscale("log")
    ax.set_xlabel("k3 KL per prompt (nats)")
    ax.tick_params(labelsize=7)
    return _svg(plt, fig)


def _latency_figure(plt, data: dict) -> str | None:
    bars: list[tuple[str, dict[str, Any]]] = []
    for test in data.get("tests", []):
        for name, block in ((test.get("details") or {}).get("workloads") or {}).items():
            repeats = block.get("repeats") or []
            if repeats and "p99_ttft_ms" in repeats[0]:
                bars.append((f"{test['case']} {name}", repeats[len(repeats) // 2]))
    if not bars:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.5 * len(bars) + 1.5))
    for ax, metric in zip(axes, ("ttft", "itl")):
        for i, (_label, summary) in enumerate(bars):
            for pct, colour in (("p99", "#bbb"), ("p90", "#888"), ("median", "#333")):
                ax.barh(i, summary.get(f"{pct}_{metric}_ms", 0), color=colour, label=pct if i == 0 else None)
        ax.set_yticks(range(len(bars)), [b[0] for b in bars], fontsize=7)
        ax.set_xlabel(f"{metric.upper()} ms")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _svg(plt, fig)
