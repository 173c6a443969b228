"""A run's results for people: the terminal summary table (rich) and a static HTML report with plots.

The HTML file stands alone (plots are inline SVG from matplotlib, styles inline, no script, no CDN): score by cell
with confidence intervals, cost against score, latency by cell, the threshold verdicts, and every sample's input,
output and scores in a table.
"""

from __future__ import annotations

import html
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mikey.evals.records import RunManifest, SampleRecord
from mikey.evals.stats import CellSummary, Comparison


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def headline(s: CellSummary) -> tuple[float | None, float | None, float | None]:
    """The number a cell is judged by: its pass rate when the scorer gives verdicts, else its mean score."""
    if s.pass_rate is not None:
        return s.pass_rate, s.pass_low, s.pass_high
    return s.mean, s.mean_low, s.mean_high


def threshold_failures(summaries: Sequence[CellSummary], manifest: RunManifest) -> list[str]:
    """Each (suite, cell, scorer) whose mean score is below the suite's threshold, in words."""
    failed = []
    for s in summaries:
        minimum = manifest.thresholds.get(s.suite, {}).get(s.scorer)
        if minimum is not None and (s.mean is None or s.mean < minimum):
            failed.append(f"{s.suite} [{s.cell.label}] {s.scorer}: {_pct(s.mean)} < {minimum:.1%}")
    return failed


def summary_table(summaries: Sequence[CellSummary], manifest: RunManifest) -> Any:
    from rich.table import Table

    table = Table(title=f"eval run {manifest.run_id}", show_lines=False)
    for column in ("suite", "cell", "scorer", "n", "score (95% CI)", "pass rate (95% CI)", "cost USD", "cached",
                   "latency p50", "threshold"):
        table.add_column(column, justify="right" if column not in ("suite", "cell", "scorer") else "left")
    for s in summaries:
        minimum = manifest.thresholds.get(s.suite, {}).get(s.scorer)
        verdict = "" if minimum is None else ("ok" if s.mean is not None and s.mean >= minimum else
                                              f"[red]< {minimum:.0%}[/red]")
        table.add_row(s.suite, s.cell.label, s.scorer, f"{s.n}" + (f" (+{s.skipped} skipped)" if s.skipped else ""),
                      f"{_pct(s.mean)} ({_pct(s.mean_low)}-{_pct(s.mean_high)})",
                      "-" if s.pass_rate is None else f"{_pct(s.pass_rate)} ({_pct(s.pass_low)}-{_pct(s.pass_high)})",
                      f"{s.cost_usd:.4f}", f"{s.cached}",
                      "-" if s.latency_median_s is None else f"{s.latency_median_s:.2f}s", verdict)
    return table


def _svg(figure: Any) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(figure)
    text = buffer.getvalue()
    return text[text.index("<svg"):]


def _plots(summaries: Sequence[CellSummary], records: Sequence[SampleRecord]) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots = []
    if not summaries:
        return plots
    labels = [f"{s.suite}\n{s.cell.label}\n{s.scorer}" for s in summaries]
    values = [headline(s) for s in summaries]
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(labels)), 4))
    centres = [v[0] or 0.0 for v in values]
    lows = [max(0.0, (v[0] or 0) - (v[1] if v[1] is not None else (v[0] or 0))) for v in values]
    highs = [max(0.0, (v[2] if v[2] is not None else (v[0] or 0)) - (v[0] or 0)) for v in values]
    ax.bar(range(len(labels)), centres, yerr=[lows, highs], capsize=4, color="#4c78a8")
    ax.set_xticks(range(len(labels)), labels, fontsize=7)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("score (pass rate where given), 95% CI")
    plots.append(("Score by cell", _svg(fig)))

    fig, ax = plt.subplots(figsize=(6, 4))
    for s in summaries:
        ax.scatter(s.cost_usd, headline(s)[0] or 0.0)
        ax.annotate(f"{s.cell.label} {s.scorer}", (s.cost_usd, headline(s)[0] or 0.0), fontsize=7)
    ax.set_xlabel("cost of the cell, USD (cached samples at their original cost)")
    ax.set_ylabel("score")
    plots.append(("Cost against score", _svg(fig)))

    by_cell: dict[str, list[float]] = {}
    for r in records:
        if not r.cached and r.error is None:
            by_cell.setdefault(f"{r.suite}\n{r.cell.label}", []).append(r.latency_s)
    if by_cell:
        fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(by_cell)), 4))
        ax.boxplot(list(by_cell.values()))
        ax.set_xticks(range(1, len(by_cell) + 1), list(by_cell), fontsize=7)
        ax.set_ylabel("latency per sample, s (computed samples)")
        plots.append(("Latency by cell", _svg(fig)))
    return plots


def _scores(record: SampleRecord) -> str:
    return "; ".join(f"{k}={v.value:.2f}" + ("" if v.passed is None else (" pass" if v.passed else " FAIL"))
                     for k, v in record.scores.items())


def _short(value: Any, limit: int = 300) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[:limit] + "..."


def write_html(path: Path, manifest: RunManifest, summaries: Sequence[CellSummary], records: Sequence[SampleRecord],
               comparisons: Sequence[Comparison] = ()) -> Path:
    """The standalone HTML report of a run (and its comparison with another, when given)."""
    e = html.escape
    failures = threshold_failures(summaries, manifest)
    rows = "".join(
        f"<tr><td>{e(s.suite)}</td><td>{e(s.cell.label)}</td><td>{e(s.scorer)}</td><td>{s.n}</td>"
        f"<td>{_pct(s.mean)} ({_pct(s.mean_low)}-{_pct(s.mean_high)})</td>"
        f"<td>{'-' if s.pass_rate is None else f'{_pct(s.pass_rate)} ({_pct(s.pass_low)}-{_pct(s.pass_high)})'}</td>"
        f"<td>{s.cost_usd:.4f}</td><td>{s.cached}</td>"
        f"<td>{'-' if s.latency_median_s is None else f'{s.latency_median_s:.2f}'}</td></tr>" for s in summaries)
    plots = "".join(f"<h3>{e(title)}</h3><div class=plot>{svg}</div>" for title, svg in _plots(summaries, records))
    compared = "".join(f"<li>{e(c.suite)} [{e(c.cell.label)}] {e(c.scorer)}: {e(c.summary)}</li>" for c in comparisons)
    samples = "".join(
        f"<tr><td>{e(r.suite)}</td><td>{e(r.case_id)}</td><td>{e(r.cell.label)}</td><td>{r.epoch}</td>"
        f"<td>{e(_short(r.input))}</td><td>{e(_short(r.output if r.error is None else r.error))}</td>"
        f"<td>{e(_scores(r))}</td>"
        f"<td>{r.tokens_in}/{r.tokens_out}</td><td>{r.cost_usd:.5f}</td><td>{r.latency_s:.2f}</td>"
        f"<td>{e(r.model or '')}{' (cached)' if r.cached else ''}</td></tr>" for r in records)
    settings = e(json.dumps(manifest.settings, default=str))
    verdict = ("<p class=bad>Below threshold: " + "; ".join(e(f) for f in failures) + "</p>") if failures else (
        "<p class=good>Every threshold met.</p>" if any(manifest.thresholds.values()) else "")
    document = f"""<!doctype html><html lang=en><head><meta charset=utf-8><title>MIKEY eval {e(manifest.run_id)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;color:#222}}table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ccc;padding:3px 6px;vertical-align:top}}th{{background:#eee}}.plot svg{{max-width:100%;
height:auto}}.bad{{color:#b00}}.good{{color:#070}}</style></head><body>
<h1>MIKEY eval run {e(manifest.run_id)}</h1>
<p>Suites: {e(', '.join(manifest.suites))}. Groups: {e(', '.join(manifest.groups))}. Epochs: {manifest.epochs}.
Seed: {manifest.seed}. Settings: {settings}. Started {manifest.started_at:%Y-%m-%d %H:%M:%S} UTC; commit
{e(manifest.git_commit or 'unknown')}; {len(records)} samples, {sum(r.cached for r in records)} from the cache.</p>
{verdict}
<h2>Summary</h2><table><tr><th>suite</th><th>cell</th><th>scorer</th><th>n</th><th>score (95% CI)</th>
<th>pass rate (95% CI)</th><th>cost USD</th><th>cached</th><th>latency p50 s</th></tr>{rows}</table>
{"<h2>Compared</h2><ul>" + compared + "</ul>" if compared else ""}
<h2>Plots</h2>{plots}
<h2>Samples</h2><table><tr><th>suite</th><th>case</th><th>cell</th><th>epoch</th><th>input</th><th>output</th>
<th>scores</th><th>tokens in/out</th><th>cost</th><th>latency s</th><th>model</th></tr>{samples}</table>
</body></html>"""
    path.write_text(document, encoding="utf-8")
    return path
