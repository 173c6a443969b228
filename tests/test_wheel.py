"""A wheel built from the repo is MIKEY on its own: installed in a fresh virtual environment, run from outside the
repo, it finds its prompts and replay data and answers a chat.

Nothing is downloaded: the wheel is built without isolation, installed with ``--no-deps --no-index``, and the new
environment reaches the dependencies already installed in this one through a ``.pth`` line (a plain path, so this
environment's editable install of ``mikey`` is not loaded; only the wheel's copy can be imported).
"""

from __future__ import annotations

import importlib.util
import shutil
import sqlite3
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.conftest import NETGUARD_DIR, REPO, mikey_env

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("build") is None, reason="the `build` package is not installed"),
]


def run(*args: str | Path, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=300, **kwargs)
    assert done.returncode == 0, f"{args}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    return done


def build_wheel(out: Path) -> Path:
    """The wheel of the repo's sources, built in a copy so the repo gets no ``build/`` or egg-info from the test."""
    source = out / "source"
    source.mkdir()
    shutil.copytree(REPO / "mikey", source / "mikey", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    run(sys.executable, "-m", "build", "--wheel", "--no-isolation", "--skip-dependency-check",
        "--outdir", out / "dist", source)
    [wheel] = (out / "dist").glob("mikey-*.whl")
    return wheel


def fresh_venv(folder: Path, wheel: Path) -> Path:
    """A virtual environment with the wheel installed and this environment's site-packages as a plain path."""
    run(sys.executable, "-m", "venv", "--without-pip", folder)
    python = folder / "bin" / "python"
    # Installed before the .pth exists, so pip sees no other mikey to upgrade or uninstall.
    run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "--no-cache-dir",
        "--disable-pip-version-check", wheel)
    site = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip())
    ours = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    (site / "_mikey_test_dependencies.pth").write_text("".join(f"{path}\n" for path in ours))
    return folder


def test_wheel_alone_answers_a_chat(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path)
    names = set(zipfile.ZipFile(wheel).namelist())
    for data in [*(REPO / "mikey" / "prompts").rglob("*.yaml"), *(REPO / "mikey" / "market" / "data").glob("*.csv")]:
        assert data.relative_to(REPO).as_posix() in names, f"{data.name} is not in the wheel"

    venv = fresh_venv(tmp_path / "venv", wheel)
    guard = tmp_path / "guard"  # the network guard, from outside the repo: nothing of the repo is importable
    shutil.copytree(NETGUARD_DIR, guard, ignore=shutil.ignore_patterns("__pycache__"))
    home = tmp_path / "home"
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = mikey_env({"PYTHONPATH": str(guard), "MIKEY_HOME": str(home), "MIKEY_MEMORY_ENABLED": "false"})
    env.pop("VIRTUAL_ENV", None)

    where = run(venv / "bin" / "python", "-c",
                "import mikey, importlib.resources as r; print(mikey.__file__); "
                "print(r.files('mikey').joinpath('prompts/chat/analyze.yaml').is_file())",
                env=env, cwd=outside).stdout.split()
    assert Path(where[0]).is_relative_to(venv) and where[1] == "True", where

    done = run(venv / "bin" / "mikey", "chat", "-m", "offline", "How is SOL doing?", env=env, cwd=outside)
    assert "Written by offline" in done.stdout and "Traceback" not in done.stderr, done.stdout + done.stderr

    from mikey.agents.prompts import load_prompt
    from mikey.settings import Settings

    conn = sqlite3.connect(Settings(home=home).ledger_db)
    try:
        rows = conn.execute("SELECT role, model_group, prompt FROM llm_calls").fetchall()
    finally:
        conn.close()
    assert ("analyze", "offline", load_prompt("chat/analyze").ref) in rows
