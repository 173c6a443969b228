"""``mikey risk assess`` and ``mikey serve`` as a user runs them: a subprocess, the bundled replay data, no network."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from mikey.api.app import RiskService, create_app, get_risk_service
from mikey.domain import RiskAssessment
from tests.conftest import NETGUARD_DIR, REPO, run_mikey
from tests.fakes.loopback import free_port
from tests.fakes.risk_api import CONTRACT_FIELDS, POSITION, URL, csv_cache, history_csv

pytestmark = pytest.mark.slow

LIGHT_HELP_FORBIDS = ("litellm", "torch", "chromadb", "transformers", "langgraph", "pandas", "numpy", "fastapi",
                      "starlette", "uvicorn", "mikey.risk", "mikey.api")


@pytest.fixture
def env(isolated_env: Path) -> dict[str, str]:
    return {"MIKEY_HOME": str(isolated_env)}


def write(tmp_path: Path, body: dict | str, name: str = "position.json") -> Path:
    path = tmp_path / name
    path.write_text(body if isinstance(body, str) else json.dumps(body))
    return path


def api_answer(settings, body: dict, history: Path | None = None) -> RiskAssessment:
    app = create_app(settings)
    if history is not None:
        cache = csv_cache(history)
        app.dependency_overrides[get_risk_service] = lambda: RiskService(cache)
    with TestClient(app) as client:
        resp = client.post(URL, json=body)
    assert resp.status_code == 200, resp.text
    return RiskAssessment.model_validate_json(resp.content)


def test_json_output_is_the_api_answer(env, settings, tmp_path) -> None:
    body = {**POSITION, "market": "solana", "leverage": 10, "margin_mode": "cross"}
    done = run_mikey("risk", "assess", "--input", str(write(tmp_path, body)), "--json", env=env)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    for name in CONTRACT_FIELDS:
        assert name in out, name
    assert RiskAssessment.model_validate(out) == api_answer(settings, body)


def test_history_csv_gives_the_same_answer_as_the_api_on_it(env, settings, tmp_path) -> None:
    csv = history_csv(tmp_path)
    position = write(tmp_path, POSITION)
    done = run_mikey("risk", "assess", "--input", str(position), "--history", str(csv), "--json", env=env)
    assert done.returncode == 0, done.stderr
    from_csv = RiskAssessment.model_validate_json(done.stdout)
    assert from_csv == api_answer(settings, POSITION, history=csv)
    feed = run_mikey("risk", "assess", "--input", str(position), "--json", env=env)
    assert RiskAssessment.model_validate_json(feed.stdout).as_of > from_csv.as_of  # the CSV ends earlier


def test_table_output(env, tmp_path) -> None:
    done = run_mikey("risk", "assess", "--input", str(write(tmp_path, {**POSITION, "size": 50})), env=env)
    assert done.returncode == 0, done.stderr
    for words in ("SOL long 50", "risk score", "liquidation price", "VaR 95%", "pre-trade checks", "365 bars"):
        assert words in done.stdout, words


@pytest.mark.parametrize(("body", "words"), [
    ({**POSITION, "size": -1}, "size: Input should be greater than 0"),
    ({**POSITION, "collateral": 0}, "collateral: Input should be greater than 0"),
    ('{"market": "SOL", "side": "long", "size": NaN, "collateral": 100}', "size"),
    ({**POSITION, "leverage": 500}, "leverage: Input should be less than or equal to 100"),
    ({**POSITION, "market": "DOGE"}, "unknown market 'DOGE'"),
    ("{not json", "position.json"),
    ({**POSITION, "returns": [1e308, 1e308, -0.5]}, "returns.0: Input should be less than or equal to 10"),
    ({**POSITION, "returns": [100] * 158}, "returns.0: Input should be less than or equal to 10"),
    ({**POSITION, "returns": [1e200, -0.5]}, "returns.0: Input should be less than or equal to 10"),
    ({**POSITION, "returns": [-1, -1, 0.1]}, "returns.0: Input should be greater than -1"),
    ({**POSITION, "returns": [10] * 365}, "returns compound to a price path"),
    ({**POSITION, "size": True}, "size: Input should be a valid number"),
    ({**POSITION, "size": "10"}, "size: Input should be a valid number"),
])
def test_bad_input_is_one_clear_line(env, tmp_path, body, words) -> None:
    done = run_mikey("risk", "assess", "--input", str(write(tmp_path, body)), env=env)
    assert done.returncode == 1
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
    assert words in done.stderr
    assert "Traceback" not in done.stderr


def test_a_binary_input_file_is_one_clear_line(env, tmp_path) -> None:
    binary = tmp_path / "position.json"
    binary.write_bytes(b"\xcd\x00\xff" + bytes(range(256)))
    done = run_mikey("risk", "assess", "--input", str(binary), env=env)
    assert done.returncode == 1, done.stderr
    assert done.stderr == f"error: --input {binary}: not a JSON text file (byte 0 is 0xcd, not UTF-8)\n"


def test_history_of_the_users_own_market(env, tmp_path) -> None:
    """A CSV is the user's data: any symbol (SPY here) is assessed on it, with the strictest tier table."""
    csv = history_csv(tmp_path)
    spy = write(tmp_path, {**POSITION, "market": "spy"})
    done = run_mikey("risk", "assess", "--input", str(spy), "--history", str(csv), "--json", env=env)
    assert done.returncode == 0, done.stderr
    result = RiskAssessment.model_validate_json(done.stdout)
    as_sol = run_mikey("risk", "assess", "--input", str(write(tmp_path, POSITION, "sol.json")), "--history", str(csv),
                       "--json", env=env)
    sol = RiskAssessment.model_validate_json(as_sol.stdout)
    assert result.market == "SPY"
    assert result.model_dump(exclude={"market", "reasons"}) == sol.model_dump(exclude={"market", "reasons"})
    assert any("no margin tiers for SPY" in r for r in result.reasons)
    feed = run_mikey("risk", "assess", "--input", str(spy), env=env)  # without a CSV, the feed covers BTC ETH SOL
    assert feed.returncode == 1 and "unknown market 'spy'; supported markets: BTC, ETH, SOL" in feed.stderr


def test_missing_files_are_one_clear_line(env, tmp_path) -> None:
    done = run_mikey("risk", "assess", "--input", str(tmp_path / "nope.json"), env=env)
    assert done.returncode == 1 and "cannot read" in done.stderr
    position = write(tmp_path, POSITION)
    done = run_mikey("risk", "assess", "--input", str(position), "--history", str(tmp_path / "nope.csv"), env=env)
    assert done.returncode == 1 and "--history file not found" in done.stderr


def test_help_stays_light() -> None:
    """Neither ``mikey --help`` nor ``mikey risk --help`` loads the API stack, pandas or the engine."""
    for argv in (["mikey", "--help"], ["mikey", "risk", "--help"], ["mikey", "risk", "assess", "--help"]):
        code = (
            "import sys\n"
            f"sys.argv = {argv!r}\n"
            "from mikey.cli import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            f"print('LOADED', [m for m in {LIGHT_HELP_FORBIDS!r} if m in sys.modules])\n"
        )
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
        assert "LOADED []" in done.stdout, (argv, done.stdout[-500:])
        assert "risk" in done.stdout


def test_serve_answers_on_loopback(env) -> None:
    port = free_port()
    full_env = {"PYTHONPATH": str(NETGUARD_DIR), "PATH": "/usr/bin:/bin", **env}
    server = subprocess.Popen([sys.executable, "-m", "mikey", "serve", "--port", str(port)], cwd=REPO, env=full_env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                health = httpx.get(f"{base}/healthz", timeout=1)
                break
            except httpx.TransportError:
                assert server.poll() is None, server.communicate()[1]
                assert time.monotonic() < deadline, "mikey serve did not start"
                time.sleep(0.1)
        assert health.status_code == 200 and health.json()["markets"]["SOL"]["bars"] == 365
        resp = httpx.post(f"{base}{URL}", json=POSITION, timeout=10)
        assert resp.status_code == 200 and RiskAssessment.model_validate_json(resp.content).market == "SOL"
        bad = httpx.post(f"{base}{URL}", json={**POSITION, "size": -1}, timeout=10)
        assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "size"
    finally:
        server.terminate()
        _, err = server.communicate(timeout=30)
    assert "Traceback" not in err
