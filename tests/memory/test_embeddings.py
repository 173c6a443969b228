"""The run-time embedder (the install-time ONNX export under onnxruntime, no torch) against sentence-transformers on
the same weights: equal vectors to 1e-5, the same 256-token cut, and a warned fallback when the export is missing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mikey.errors import ConfigError
from mikey.memory.embeddings import MANIFEST, ONNX_DIR, MiniLMEmbedding, default_model_path

TEXTS = [
    "How is SOL doing?",
    "What did you make of solana's momentum?",
    "BTC 26,100.5 -1.2% RSI(14) 38.10 MACD 12.4 above its signal; Bollinger upper 27,950.0",
    "\tspaces   inside,\n\nnew lines and tabs\t ",
    "ÉTH ünd çafé — “smart quotes”, 日本語のテキスト, emoji 🚀🌕",
    "I'm a conservative trader, I mostly trade ETH",
    "",
    "?",
    "Funding on SOL-PERP flipped negative while open interest kept rising into the weekend. " * 30,  # ~500 tokens
    " ".join(f"token{i}" for i in range(700)),
]


@pytest.fixture(scope="module")
def onnx() -> MiniLMEmbedding:
    return MiniLMEmbedding(backend="onnx")


@pytest.fixture(scope="module")
def reference() -> MiniLMEmbedding:
    return MiniLMEmbedding(backend="sentence-transformers")


def test_onnx_vectors_equal_sentence_transformers(onnx, reference) -> None:
    expected = np.array(reference(TEXTS))
    batched = np.array(onnx(TEXTS))  # one padded batch
    alone = np.array([onnx([text])[0] for text in TEXTS])  # no padding at all
    assert batched.shape == (len(TEXTS), 384)
    np.testing.assert_allclose(batched, expected, rtol=0, atol=1e-5)
    np.testing.assert_allclose(alone, expected, rtol=0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)


def test_long_texts_are_cut_at_max_seq_length_like_sentence_transformers(onnx, reference) -> None:
    """Two texts that differ only past the 256th token embed identically, in both; a difference before it shows."""
    head = " ".join(f"token{i}" for i in range(300))
    texts = [head + " and then the market crashed", head + " and then it rallied hard", "token0 " + head]
    for embed in (onnx, reference):
        first, second, shifted = np.array(embed(texts))
        np.testing.assert_allclose(first, second, rtol=0, atol=1e-6)
        assert np.abs(first - shifted).max() > 1e-3


def test_more_texts_than_one_batch(onnx, reference) -> None:
    texts = [f"SOL note {i}: funding {i * 3} bps" for i in range(40)]
    np.testing.assert_allclose(np.array(onnx(texts)), np.array(reference(texts)), rtol=0, atol=1e-5)


def test_runtime_embedder_imports_no_torch() -> None:
    code = ("import sys\nfrom mikey.memory.embeddings import MiniLMEmbedding\n"
            "vector = MiniLMEmbedding()(['How is SOL doing?'])[0]\n"
            "print(len(vector), [m for m in ('torch', 'transformers', 'sentence_transformers') if m in sys.modules])\n")
    done = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "384 []"


@pytest.fixture
def model_without_export(tmp_path: Path) -> Path:
    """The packaged weights' files, linked into a folder that has no ONNX export."""
    folder = tmp_path / "minilm"
    folder.mkdir()
    for item in default_model_path().iterdir():
        if item.name != ONNX_DIR:
            (folder / item.name).symlink_to(item)
    return folder


def test_without_export_auto_falls_back_with_a_warning(model_without_export, reference) -> None:
    embedding = MiniLMEmbedding(str(model_without_export))
    with pytest.warns(RuntimeWarning, match=r"no ONNX export .* python -m mikey.memory.onnx_export"):
        vectors = np.array(embedding(TEXTS[:3]))
    np.testing.assert_allclose(vectors, np.array(reference(TEXTS[:3])), rtol=0, atol=1e-5)


def test_without_export_onnx_backend_is_a_clear_error(model_without_export) -> None:
    with pytest.raises(ConfigError, match=r"no ONNX export of the embedding model in .*; export it with: python -m"):
        MiniLMEmbedding(str(model_without_export), backend="onnx").load()


def test_export_of_other_weights_is_not_used(model_without_export) -> None:
    """An export whose manifest names other weights (an upgraded package, say) is refused, not silently used."""
    export = model_without_export / ONNX_DIR
    export.mkdir()
    installed = default_model_path() / ONNX_DIR
    (export / "model.onnx").symlink_to(installed / "model.onnx")
    manifest = json.loads((installed / MANIFEST).read_text())
    manifest["weights"].update(mtime_ns=0, sha256="0" * 64)
    (export / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ConfigError, match="was made from other weights"):
        MiniLMEmbedding(str(model_without_export), backend="onnx").load()
