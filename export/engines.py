"""Run an edge bundle on texts: onnxruntime (with the bundle's Hugging Face tokenizer files) or
the numpy runtime (runtime.Classifier, with its own WordPiece tokenizer and vocab.txt).

Both engines return raw logits, float32 (n, n_labels), in the order of the texts, so
`distill eval` turns either into probabilities the same way (softmax) and the two can be
compared number for number.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from runtime.tokenizer import check_texts

ENGINES = ("onnxruntime", "numpy")


def is_bundle(path) -> bool:
    """A directory holding runtime.json and model.onnx."""
    path = Path(path)
    return (path / "runtime.json").is_file() and (path / "model.onnx").is_file()


def read_runtime_json(bundle_dir) -> dict:
    if not is_bundle(bundle_dir):
        raise FileNotFoundError(f"{bundle_dir}: not an edge bundle (needs runtime.json and model.onnx)")
    return json.loads((Path(bundle_dir) / "runtime.json").read_text(encoding="utf-8"))


def onnxruntime_logits(bundle_dir, texts, threads: int = 1, batch_size: int = 32,
                       max_length: int | None = None, progress: bool = False) -> np.ndarray:
    """model.onnx through onnxruntime; texts tokenized by the bundle's Hugging Face tokenizer
    (distill.tokenization.load_tokenizer)."""
    import onnxruntime as ort
    from tqdm.auto import tqdm

    from distill.predict import encode, length_sorted_batches
    from distill.tokenization import load_tokenizer

    config = read_runtime_json(bundle_dir)
    max_length = int(max_length or config["max_length"])
    if not texts:
        return np.zeros((0, len(config["labels"])), dtype=np.float32)
    tokenizer = load_tokenizer(bundle_dir)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(Path(bundle_dir) / "model.onnx"), options,
                                   providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    rows = encode(tokenizer, texts, max_length, progress=progress)
    out = np.zeros((len(texts), len(config["labels"])), dtype=np.float32)
    batches = length_sorted_batches(rows.lengths(), batch_size)
    for idx in tqdm(batches, desc="predict", unit="batch", disable=not progress):
        batch = tokenizer.pad([rows[i] for i in idx], return_tensors="np")
        feeds = {name: np.asarray(batch[name], dtype=np.int64) if name in batch
                 else np.zeros_like(batch["input_ids"], dtype=np.int64) for name in names}
        out[idx] = session.run([config["output"]], feeds)[0]
    return out


def numpy_logits(bundle_dir, texts, batch_size: int = 32, max_length: int | None = None,
                 progress: bool = False) -> np.ndarray:
    """model.onnx through the numpy runtime (runtime.Classifier)."""
    from tqdm.auto import tqdm

    from runtime import Classifier

    classifier = Classifier.load(bundle_dir, batch_size=batch_size)
    if max_length is not None:
        classifier.max_length = int(max_length)
    with tqdm(total=len(texts), desc="predict", unit="text", disable=not progress) as bar:
        logits = classifier.logits(texts, progress=lambda done, total: bar.update(done - bar.n))
    return np.asarray(logits, dtype=np.float32)


def max_length_limit(bundle_dir) -> tuple[int, str]:
    """(the longest token limit the bundle accepts, what sets it): runtime.json's max_length,
    or the position embeddings in config.json when a hand-edited runtime.json asks for more."""
    limit = (int(read_runtime_json(bundle_dir)["max_length"]), "the bundle's max_length in runtime.json")
    config_file = Path(bundle_dir) / "config.json"
    if config_file.is_file():
        positions = json.loads(config_file.read_text(encoding="utf-8")).get("max_position_embeddings")
        if positions and int(positions) < limit[0]:
            limit = (int(positions), "the model's max_position_embeddings")
    return limit


def check_max_length(bundle_dir, max_length: int | None) -> None:
    """A requested token limit must lie in 2..max_length_limit(bundle_dir)."""
    if max_length is None:
        return
    limit, reason = max_length_limit(bundle_dir)
    if not 2 <= max_length <= limit:
        raise ValueError(f"max_length {max_length!r}: must lie in 2..{limit} ({reason})")


def bundle_predict_logits(bundle_dir, texts, engine: str = "onnxruntime", threads: int = 1,
                          batch_size: int = 32, max_length: int | None = None, progress: bool = False) -> np.ndarray:
    """Logits (n, n_labels) float32 for texts, in order, from a bundle with the chosen engine.
    Texts are cut to max_length tokens (default: the bundle's max_length, runtime.json)."""
    texts = check_texts(texts, "predict")
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if engine not in ENGINES:
        raise ValueError(f"engine {engine!r}: expected one of {', '.join(ENGINES)}")
    check_max_length(bundle_dir, max_length)
    if engine == "onnxruntime":
        return onnxruntime_logits(bundle_dir, texts, threads=threads, batch_size=batch_size,
                                  max_length=max_length, progress=progress)
    read_runtime_json(bundle_dir)
    return numpy_logits(bundle_dir, texts, batch_size=batch_size, max_length=max_length, progress=progress)
