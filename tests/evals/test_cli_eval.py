"""``mikey eval run|compare|report|list`` as a user runs them: fresh processes, a fresh MIKEY_HOME, suites in a tmp
folder (``--dir``), and for prompt targets a fake OpenAI server on 127.0.0.1 speaking the real wire format."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, mikey_env, run_mikey
from tests.fakes.provider_server import FakeProviderServer, Reply

pytestmark = pytest.mark.slow

MINI = """\
name: mini
description: three headlines the engine reads right
target: {kind: engine, engine: sentiment}
groups: [offline]
cases:
  - {id: up, input: "Bitcoin surges to record high as ETF inflows soar", expected: positive}
  - {id: down, input: "Exchange hacked, millions stolen, token crashes", expected: negative}
  - {id: flat, input: "Bitcoin trades flat ahead of Fed minutes", expected: neutral}
scorers: [exact]
thresholds: {exact: 0.5}
"""

# The engine reads the fourth headline as neutral (a record inflow is good news): 3 of 4, below the 100% asked.
STRICT = MINI.replace("name: mini", "name: strict").replace("{exact: 0.5}", "{exact: 1.0}").replace(
    "scorers:", '  - {id: flows, input: "BlackRock\'s bitcoin fund draws record $1.1 billion in a single day", '
                "expected: positive}\nscorers:")


# Nine headlines the engine labels right; the same suite with every label rotated is one it gets all wrong.
HEADS = {
    "p1": ("Bitcoin climbs above $70,000 as spot ETF inflows hit a three-month high", "positive"),
    "p2": ("Ether jumps 9% after SEC approves spot Ethereum ETFs", "positive"),
    "p3": ("Solana surges to yearly high as DEX volumes top $4 billion", "positive"),
    "n1": ("Bitcoin plunges 8% as $1 billion in long positions are liquidated", "negative"),
    "n2": ("Ether slides below $3,000 amid heavy ETF outflows", "negative"),
    "n3": ("Solana suffers five-hour outage, halting block production", "negative"),
    "z1": ("Bitcoin trades flat near $67,000 ahead of Fed minutes", "neutral"),
    "z2": ("Ethereum developers schedule next core call for Thursday", "neutral"),
    "z3": ("Solana Foundation publishes quarterly validator report", "neutral"),
}
ROTATED = {"positive": "negative", "negative": "neutral", "neutral": "positive"}


def heads_suite(rotate: bool = False) -> str:
    rows = "\n".join(f"  - {{id: {key}, input: {json.dumps(text)}, expected: {ROTATED[label] if rotate else label}}}"
                     for key, (text, label) in HEADS.items())
    return f"name: heads\ntarget: {{kind: engine, engine: sentiment}}\ncases:\n{rows}\nscorers: [exact]\n"


def llm_suite(name: str, cases: int) -> str:
    rows = "\n".join(f'  - {{id: k{i:02d}, input: {{headline: "Headline k{i:02d}: SOL rallies"}}, expected: positive}}'
                     for i in range(cases))
    return (f"name: {name}\ntarget: {{kind: prompt, prompt: eval/sentiment, versions: [2]}}\ngroups: [gpt-4]\n"
            f"cases:\n{rows}\nscorers: [{{type: exact, normalize: true, labels: [positive, negative, neutral]}}]\n")


@pytest.fixture
def suites(tmp_path: Path) -> Path:
    folder = tmp_path / "suites"
    folder.mkdir()
    (folder / "mini.yaml").write_text(MINI, encoding="utf-8")
    (folder / "strict.yaml").write_text(STRICT, encoding="utf-8")
    (folder / "llm.yaml").write_text(llm_suite("llm", 12), encoding="utf-8")
    return folder


@pytest.fixture
def env(isolated_env: Path) -> dict[str, str]:
    return {"MIKEY_HOME": str(isolated_env)}


@pytest.fixture
def openai():
    with FakeProviderServer("openai", Reply("positive")) as server:
        yield server


@pytest.fixture
def llm_env(env, openai, tmp_path) -> dict[str, str]:
    """Keyed for the fake OpenAI server only: no local model, no retries, no cooldowns."""
    return {**env, "OPENAI_API_KEY": "sk-test", "MIKEY_OPENAI_API_BASE": openai.api_base, "MIKEY_NUM_RETRIES": "0",
            "MIKEY_COOLDOWN_SECONDS": "0", "MIKEY_LOCAL_MODEL_PATH": str(tmp_path / "no-local-model.gguf")}


def ok(*args: str, env: dict[str, str]) -> str:
    done = run_mikey(*args, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    return done.stdout


def run_json(*args: str, env: dict[str, str]) -> dict:
    return json.loads(ok("eval", "run", *args, "--json", env=env))


def samples(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "samples.jsonl").read_text(encoding="utf-8").splitlines()]


# --- run ------------------------------------------------------------------------------------------------------------


def test_run_prints_the_table_writes_a_standalone_report_and_json(env, suites, isolated_env) -> None:
    out = ok("eval", "run", "mini", "--dir", str(suites), "--no-progress", env=env)
    [run_dir] = (isolated_env / "evals" / "runs").iterdir()
    assert f"eval run {run_dir.name}" in out
    row = next(line for line in out.splitlines() if "mini" in line and "exact" in line)
    assert "offline" in row and "100.0%" in row and "ok" in row  # the threshold verdict
    assert "3 samples (0 from the cache), 0.0000 USD spent this run." in out
    assert "Report:" in out and "below threshold" not in out
    assert len(samples(run_dir)) == 3 and (run_dir / "run.json").exists()

    html = (run_dir / "report.html").read_text(encoding="utf-8")
    assert "<h2>Summary</h2>" in html and "<td>mini</td><td>offline</td><td>exact</td><td>3</td>" in html
    assert "Every threshold met." in html
    assert html.count("<svg") >= 2  # score by cell, cost against score (inline, not files)
    assert "Bitcoin surges to record high" in html  # every sample is in the table
    assert not re.search(r"<script|<link|<iframe|<img|@import", html, re.I)
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", html, re.I)
    assert not re.search(r"url\(\s*['\"]?\s*(?:https?:)?//", html, re.I)

    # --json. Strict's first three cases are mini's (same target, same input): all but its fourth are cached. It is
    # below its threshold: reported, but without --ci not enforced.
    again = run_json("mini", "strict", "--dir", str(suites), env=env)
    assert again["run_id"] != run_dir.name
    assert (again["samples"], again["cached"]) == (7, 6)
    assert again["below_threshold"] == ["strict [offline] exact: 75.0% < 100.0%"]
    summary = {s["suite"]: s for s in again["summary"]}
    assert (summary["mini"]["cell"]["group"], summary["mini"]["scorer"], summary["mini"]["n"]) == (
        "offline", "exact", 3)
    assert (summary["mini"]["pass_rate"], summary["strict"]["pass_rate"], summary["strict"]["n"]) == (1.0, 0.75, 4)
    assert Path(again["run_dir"]).name == again["run_id"] and Path(again["report"]).exists()


def test_ci_exits_1_below_a_threshold_and_0_when_met(env, suites) -> None:
    below = run_mikey("eval", "run", "strict", "--dir", str(suites), "--ci", "--no-progress", env=env)
    met = run_mikey("eval", "run", "mini", "--dir", str(suites), "--ci", "--no-progress", env=env)
    assert below.returncode == 1, below.stdout + below.stderr
    assert met.returncode == 0, met.stdout + met.stderr
    assert "Traceback" not in below.stderr and "below threshold" not in met.stdout
    # The failure names its suite, cell and scorer (the cell tells which model or prompt version fell short).
    assert "below threshold: strict [offline] exact: 75.0% < 100.0%" in below.stdout


# --- compare, report, list ------------------------------------------------------------------------------------------


def test_compare_says_what_is_significant_and_the_report_shows_it(env, suites, tmp_path) -> None:
    relabelled = tmp_path / "relabelled"
    relabelled.mkdir()
    (suites / "heads.yaml").write_text(heads_suite(), encoding="utf-8")
    (relabelled / "heads.yaml").write_text(heads_suite(rotate=True), encoding="utf-8")
    a = run_json("heads", "--dir", str(suites), env=env)
    same = run_json("heads", "--dir", str(suites), env=env)
    b = run_json("heads", "--dir", str(relabelled), env=env)  # the same outputs (cached), judged by other labels
    assert (a["summary"][0]["pass_rate"], b["summary"][0]["pass_rate"], b["cached"]) == (1.0, 0.0, 9)

    [line] = ok("eval", "compare", a["run_id"], same["run_id"], env=env).strip().splitlines()
    assert line.startswith("heads [offline] exact: pass rate 100.0% -> 100.0% (+0.0 points")
    assert "not significant" in line and not re.search(r"(?<!not )significant", line)

    [compared] = json.loads(ok("eval", "compare", a["run_id"], b["run_id"], "--json", env=env))
    assert (compared["suite"], compared["n_pairs"], compared["significant"]) == ("heads", 9, True)
    assert (compared["mcnemar"]["b10"], compared["mcnemar"]["b01"]) == (9, 0)
    assert compared["summary"].startswith("pass rate 100.0% -> 0.0% (-100.0 points")
    assert "McNemar p=0.0039: significant" in compared["summary"]

    written = ok("eval", "report", b["run_id"], "--against", a["run_id"], env=env).strip()
    html = Path(written).read_text(encoding="utf-8")
    assert written == b["report"] and "<h2>Compared</h2>" in html and "McNemar p=0.0039: significant" in html

    runs = ok("eval", "list", "--runs", env=env).strip().splitlines()
    assert sorted(runs) == sorted(f"{r['run_id']}  heads  groups offline  finished" for r in (a, same, b))


def test_list_shows_the_suites(env, suites) -> None:
    lines = ok("eval", "list", "--dir", str(suites), env=env).strip().splitlines()
    assert [line.split()[0] for line in lines] == ["llm", "mini", "strict"]
    llm = lines[0]
    assert "prompt eval/sentiment" in llm and "12 cases" in llm and "groups gpt-4" in llm and "scorers exact" in llm
    assert "engine" in lines[1] and "3 cases" in lines[1] and "groups offline" in lines[1]
    assert ok("eval", "list", "--runs", env=env) == ""


# --- bad input ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("args", "message"), [
    (["run", "nope"], "error: no suite "),
    (["run", "mini", "--groups", "nope"], "error: unknown model group 'nope'; groups: gpt-4, claude"),
    (["run", "mini", "--groups", "gpt-4"], "error: model group 'gpt-4' is not usable: OPENAI_API_KEY is not set"),
    (["run", "mini", "--group-limit", "offline=0"], "error: --group-limit takes GROUP=N with N >= 1, not 'offline=0'"),
    (["run", "mini", "--concurrency", "0"], "error: concurrency must be at least 1, not 0"),
    (["run", "broken"], "error: broken.jsonl line 2: not JSON"),
    (["compare", "run-a", "run-b"], "error: no eval run 'run-a'"),
])
def test_bad_input_is_one_error_line(env, suites, args: list[str], message: str) -> None:
    (suites / "broken.jsonl").write_text('{"id": "a", "input": "x"}\n{"id": "b", "input": \n', encoding="utf-8")
    folder = suites / "bad"
    folder.mkdir()
    (folder / "broken.yaml").write_text("name: broken\ntarget: {kind: engine, engine: sentiment}\n"
                                        "dataset: ../broken.jsonl\nscorers: [exact]\n", encoding="utf-8")
    if args[0] == "run":
        args = [*args, "--dir", str(folder if "broken" in args else suites), "--no-progress"]
    done = run_mikey("eval", *args, env=env)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(message), done.stderr


# --- a killed run, resumed ------------------------------------------------------------------------------------------


def test_a_run_killed_midway_resumes_with_only_the_missing_samples(llm_env, suites, openai, isolated_env) -> None:
    openai.default = Reply("positive", delay=0.25)
    (suites / "slow.yaml").write_text(llm_suite("slow", 10), encoding="utf-8")
    command = [sys.executable, "-m", "mikey", "eval", "run", "slow", "--dir", str(suites), "--no-progress", "-c", "1"]
    process = subprocess.Popen(command, env=mikey_env(llm_env), cwd=REPO, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    runs = isolated_env / "evals" / "runs"
    try:
        deadline = time.monotonic() + 120
        while not any((d / "samples.jsonl").read_text(encoding="utf-8").count("\n") >= 3
                      for d in runs.glob("*") if (d / "samples.jsonl").exists()):
            assert process.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "the run wrote no samples"
            time.sleep(0.02)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    [run_dir] = runs.iterdir()
    kept = samples(run_dir)
    assert 3 <= len(kept) < 10
    assert f"{run_dir.name}  slow  groups gpt-4  interrupted" in ok("eval", "list", "--runs", env=llm_env)
    before = len(openai.requests)

    openai.default = Reply("positive")
    resumed = run_json("slow", "--dir", str(suites), "--resume", run_dir.name, env=llm_env)
    assert (resumed["run_id"], resumed["samples"]) == (run_dir.name, 10)
    log = samples(run_dir)
    assert len(log) == len({r["case_id"] for r in log}) == 10  # each sample exactly once
    assert log[:len(kept)] == kept

    def case_of(request) -> str:
        return re.search(r"Headline (k\d\d):", json.dumps(request.body)).group(1)

    again = {case_of(r) for r in openai.requests[before:]}
    assert not again & {r["case_id"] for r in kept}, "a sample already in the log called the provider again"
    assert {case_of(r) for r in openai.requests} == {f"k{i:02d}" for i in range(10)}
    assert f"{run_dir.name}  slow  groups gpt-4  finished" in ok("eval", "list", "--runs", env=llm_env)
