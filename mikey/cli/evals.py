"""``mikey eval``: run suites over a models x prompts matrix, summarise, report and compare runs.

Every call goes through the runtime's router (the ledger records tokens and cost; budgets apply). Runs are kept in
``MIKEY_HOME/evals/runs/<run_id>``; the response cache makes an unchanged re-run free and an interrupted run resumable.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from mikey.cli.common import load_settings
from mikey.errors import InvalidInput

eval_app = typer.Typer(help="Prompt and model evaluations: suites, the matrix, reports, comparisons.",
                       no_args_is_help=True)


def _split(values: list[str] | None) -> list[str]:
    return [v.strip() for value in values or [] for v in value.split(",") if v.strip()]


def _limits(values: list[str] | None) -> dict[str, int]:
    limits = {}
    for value in _split(values):
        group, _, number = value.partition("=")
        if not number.isdigit() or int(number) < 1:
            raise InvalidInput(f"--group-limit takes GROUP=N with N >= 1, not {value!r}")
        limits[group] = int(number)
    return limits


@eval_app.command("run")
def run(
    suites: Annotated[list[str] | None, typer.Argument(help="Suite names in the evals folder, or YAML paths; "
                                                        "default: every suite.")] = None,
    groups: Annotated[list[str] | None, typer.Option("--groups", "-g", help="Model groups (comma-separated or "
                                                     "repeated); default: each suite's.")] = None,
    prompts: Annotated[list[str] | None, typer.Option("--prompt", "-p", help="Prompt versions for prompt targets, "
                                                      "name@version (repeatable).")] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", help="Runs of each case in each cell.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Recorded with the run and part of every cache key.")] = 0,
    concurrency: Annotated[int, typer.Option("--concurrency", "-c", help="Samples at once.")] = 8,
    group_limit: Annotated[list[str] | None, typer.Option("--group-limit", help="GROUP=N: at most N samples at "
                                                          "once in that group.")] = None,
    workers: Annotated[int, typer.Option("--workers", "-w", help="Processes to split the samples over (hosted "
                                         "groups are CPU-bound in one process past ~80 calls/s).")] = 1,
    resume: Annotated[str | None, typer.Option("--resume", help="Continue this run id (only its missing samples "
                                               "run).")] = None,
    folder: Annotated[Path, typer.Option("--dir", help="Where the suites are.")] = Path("evals"),
    ci: Annotated[bool, typer.Option("--ci", help="Exit 1 when a scorer's mean is below its suite's threshold.")]
    = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="A progress bar while running.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="The summary as JSON.")] = False,
) -> None:
    """Run eval suites across model groups and prompt versions; writes samples, a summary and an HTML report."""
    from rich.console import Console

    from mikey.evals.report import summary_table, threshold_failures, write_html
    from mikey.evals.runner import EvalRunner, read_manifest, runs_dir
    from mikey.evals.stats import cell_summary
    from mikey.evals.suite import find_suites
    from mikey.runtime import open_runtime

    settings = load_settings()
    found = find_suites(folder, suites or None)
    if resume is not None and not (runs_dir(settings) / resume / "run.json").exists():
        raise InvalidInput(f"no eval run {resume!r} to resume (runs are in {runs_dir(settings)})")
    chosen = _split(groups) or sorted({g for s in found for g in s.groups})
    with open_runtime(settings, memory=None, news=None, warm_local="local" in chosen) as runtime:
        runner = EvalRunner(settings, found, chat_model=runtime.chat_model, ledger=runtime.ledger,
                            feed=runtime.feed, groups=_split(groups) or None, prompts=_split(prompts),
                            epochs=epochs, seed=seed, concurrency=concurrency, group_limits=_limits(group_limit),
                            run_id=resume, progress=progress and not as_json, workers=workers)
        records = runner.run()
    manifest = read_manifest(runner.run_dir)
    summaries = cell_summary(records)
    report = write_html(runner.run_dir / "report.html", manifest, summaries, records)
    failures = threshold_failures(summaries, manifest)
    if as_json:
        typer.echo(json.dumps({"run_id": manifest.run_id, "run_dir": str(runner.run_dir), "report": str(report),
                               "samples": len(records), "cached": sum(r.cached for r in records),
                               "summary": [s.model_dump(mode="json") for s in summaries],
                               "below_threshold": failures}))
    else:
        console = Console()
        console.print(summary_table(summaries, manifest))
        spent = sum(r.cost_usd for r in records if not r.cached)
        console.print(f"{len(records)} samples ({sum(r.cached for r in records)} from the cache), {spent:.4f} USD "
                      f"spent this run. Report: {report}", highlight=False)
        from rich.markup import escape

        for failure in failures:
            console.print(f"[red]below threshold:[/red] {escape(failure)}", highlight=False)
    if ci and failures:
        raise typer.Exit(1)


@eval_app.command("compare")
def compare(
    run_a: Annotated[str, typer.Argument(help="The baseline run (id, path, or 'latest').")],
    run_b: Annotated[str, typer.Argument(help="The run compared with it.")],
    as_json: Annotated[bool, typer.Option("--json", help="The comparisons as JSON.")] = False,
) -> None:
    """Paired comparison of two runs: McNemar for pass/fail, paired bootstrap for scores; says what is significant."""
    from mikey.evals.runner import read_records, resolve_run
    from mikey.evals.stats import compare_runs

    settings = load_settings()
    a = read_records(resolve_run(settings, run_a))
    b = read_records(resolve_run(settings, run_b))
    comparisons = compare_runs(a, b)
    if as_json:
        typer.echo(json.dumps([c.model_dump(mode="json") for c in comparisons]))
        return
    if not comparisons:
        typer.echo("the two runs share no scored samples (same suites, cases and cells) to compare")
        return
    for c in comparisons:
        typer.echo(f"{c.suite} [{c.cell.label}] {c.scorer}: {c.summary}")


@eval_app.command("report")
def report(
    run_ref: Annotated[str, typer.Argument(help="Run id, path, or 'latest'.")] = "latest",
    against: Annotated[str | None, typer.Option("--against", help="A baseline run to compare with.")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Where to write the HTML (default: the run's "
                                             "folder).")] = None,
) -> None:
    """Write (again) a run's HTML report, optionally with its comparison against a baseline run."""
    from mikey.evals.report import write_html
    from mikey.evals.runner import read_manifest, read_records, resolve_run
    from mikey.evals.stats import cell_summary, compare_runs

    settings = load_settings()
    run_dir = resolve_run(settings, run_ref)
    records = read_records(run_dir)
    comparisons = compare_runs(read_records(resolve_run(settings, against)), records) if against else []
    path = write_html(out or run_dir / "report.html", read_manifest(run_dir), cell_summary(records), records,
                      comparisons)
    typer.echo(str(path))


@eval_app.command("list")
def list_suites(
    folder: Annotated[Path, typer.Option("--dir", help="Where the suites are.")] = Path("evals"),
    runs: Annotated[bool, typer.Option("--runs", help="List the runs kept instead.")] = False,
) -> None:
    """The suites (name, target, cases, groups, scorers), or the runs kept."""
    from mikey.evals.runner import read_manifest, runs_dir
    from mikey.evals.suite import find_suites

    if runs:
        settings = load_settings()
        for path in sorted(runs_dir(settings).glob("*/run.json")):
            m = read_manifest(path.parent)
            typer.echo(f"{m.run_id}  {', '.join(m.suites)}  groups {', '.join(m.groups)}  "
                       f"{'finished' if m.finished_at else 'interrupted'}")
        return
    for suite in find_suites(folder):
        target = suite.target.kind + (f" {suite.target.prompt}" if suite.target.prompt else "") + (
            f" {suite.target.node}" if suite.target.node else "")
        typer.echo(f"{suite.name:<18} {target:<28} {len(suite.cases):>4} cases  groups {','.join(suite.groups)}  "
                   f"scorers {','.join(s.name for s in suite.scorers)}")


@eval_app.command("breakdown")
def breakdown(
    run_ref: Annotated[str, typer.Argument(help="Run id, path, or 'latest'.")] = "latest",
    by: Annotated[str, typer.Option("--by", help="What to group samples by: a path into the case's expected "
                                    "(expected.kind), or 'tag'.")] = "expected.kind",
    suite: Annotated[str | None, typer.Option("--suite", help="Only this suite.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Scores of a run broken down by a label of the cases (e.g. the intent suite per expected kind)."""
    from mikey.evals.runner import read_records, resolve_run
    from mikey.evals.scorers import at_path

    records = [r for r in read_records(resolve_run(load_settings(), run_ref)) if suite is None or r.suite == suite]
    groups: dict[tuple[str, str, str], list[tuple[float, bool | None]]] = {}
    for r in records:
        if by == "tag":
            keys = [str(t) for t in (getattr(r, "tags", None) or [])] or ["(no tag)"]
        else:
            keys = [str(at_path({"expected": r.expected, "input": r.input}, by))]
        for key in keys:
            for name, s in r.scores.items():
                if not s.skipped:
                    groups.setdefault((r.cell.label, name, key), []).append((s.value, s.passed))
    rows = []
    for (cell, name, key), values in sorted(groups.items()):
        verdicts = [p for _, p in values if p is not None]
        rows.append({"cell": cell, "scorer": name, "group": key, "n": len(values),
                     "mean": sum(v for v, _ in values) / len(values),
                     "pass_rate": sum(verdicts) / len(verdicts) if verdicts else None})
    if as_json:
        typer.echo(json.dumps(rows))
        return
    for row in rows:
        rate = "-" if row["pass_rate"] is None else f"{row['pass_rate']:.1%}"
        typer.echo(f"{row['cell']:<12} {row['scorer']:<18} {row['group']:<12} n={row['n']:<4} mean {row['mean']:.1%}  "
                   f"pass {rate}")
