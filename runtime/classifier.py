"""Classifier: an edge bundle (model.onnx, vocab.txt, runtime.json) -> labels and probabilities.

    clf = Classifier.load("models/demo/student-int8")   # made by `make demo`
    clf.predict(["a gripping film", "dull and lifeless"])   # -> ["positive", "negative"]
    clf.predict_proba(texts)                                 # -> float32 (n, n_labels)

Texts are tokenized once, sorted by token count and cut into batches of `batch_size`, so
each batch is padded only to its own longest text; results come back in input order.
"""
from __future__ import annotations

import hashlib
import json
import numbers
import os
import re

import numpy as np

from .tokenizer import WordPieceTokenizer, check_texts, pad_batch, tokenizer_kwargs, vocab_from_bytes

RUNTIME_FORMAT = 1
BUNDLE_FILES = ("runtime.json", "vocab.txt", "model.onnx")
FEEDABLE_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class BundleError(ValueError):
    """A bundle whose runtime.json or vocab.txt is unreadable or does not describe a usable
    classifier (with the model.onnx beside it)."""


def cannot_read(path: str, error: OSError) -> str:
    """The message for a bundle file that exists but cannot be read (permissions, I/O error)."""
    reason = error.strerror or str(error) or type(error).__name__
    other = error.filename is not None and os.fspath(error.filename) != path
    return f"{path}: cannot be read" + (f" ({error.filename})" if other else "") + f": {reason}"


def read_runtime_config(bundle_dir) -> dict:
    """Check the bundle's files are there and runtime.json is well formed -> its dict."""
    if not isinstance(bundle_dir, (str, bytes, os.PathLike)):
        raise TypeError(f"bundle_dir must be a path (str, bytes or os.PathLike), not {type(bundle_dir).__name__}")
    bundle_dir = os.fsdecode(bundle_dir)
    if not os.path.exists(bundle_dir):
        raise FileNotFoundError(f"bundle directory not found: {bundle_dir}")
    if not os.path.isdir(bundle_dir):
        raise NotADirectoryError(f"not a bundle directory: {bundle_dir} is a file; a bundle is "
                                 f"the directory holding {', '.join(BUNDLE_FILES)}")
    for name in BUNDLE_FILES:
        path = os.path.join(bundle_dir, name)
        if os.path.isdir(path):
            raise BundleError(f"bundle {bundle_dir}: {name} is a directory, not a file")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"bundle {bundle_dir} has no {name} (expected {path})")
    path = os.path.join(bundle_dir, "runtime.json")
    try:
        with open(path, "r", encoding="utf-8") as f:
            config = json.load(f)
    except (ValueError, UnicodeDecodeError) as e:
        raise BundleError(f"{path}: not valid JSON: {e}") from None
    except RecursionError:
        raise BundleError(f"{path}: not valid JSON: nested too deeply") from None
    except FileNotFoundError:  # removed since the check above: still a missing file
        raise
    except OSError as e:
        raise BundleError(cannot_read(path, e)) from None
    if not isinstance(config, dict):
        raise BundleError(f"{path}: expected a JSON object")
    version = config.get("format")
    if type(version) is not int or version != RUNTIME_FORMAT:       # not true, 1.0 or "1"
        raise BundleError(f"{path}: unsupported format {config.get('format')!r}; "
                          f"this runtime reads format {RUNTIME_FORMAT}")
    check_runtime_config(config, path)
    return config


def check_runtime_config(config: dict, path: str) -> None:
    def bad(key, expected):
        raise BundleError(f"{path}: {key!r} must be {expected}, got {config.get(key)!r}")

    labels = config.get("labels")
    if not (isinstance(labels, list) and labels and all(isinstance(x, str) and x for x in labels)
            and len(set(labels)) == len(labels)):
        bad("labels", "a non-empty list of distinct, non-empty strings")
    inputs = config.get("inputs")
    if not (isinstance(inputs, list) and inputs and all(x in FEEDABLE_INPUTS for x in inputs)):
        bad("inputs", f"a non-empty list drawn from {list(FEEDABLE_INPUTS)}")
    if not isinstance(config.get("output"), str):
        bad("output", "the name of the logits output")
    max_length = config.get("max_length")
    if not (isinstance(max_length, int) and not isinstance(max_length, bool) and max_length >= 2):
        bad("max_length", "an integer >= 2")
    if not isinstance(config.get("tokenizer"), dict):
        bad("tokenizer", "an object")
    digest = config.get("vocab_sha256", "")
    if not (isinstance(digest, str) and re.fullmatch(r"([0-9a-f]{64})?", digest)):
        bad("vocab_sha256", "the SHA-256 of vocab.txt in lower-case hex")


def vocab_digest(data: bytes) -> str:
    """runtime.json's vocab_sha256: the SHA-256 of vocab.txt's bytes read as load_vocab reads
    them, a leading byte-order mark dropped and CRLF line ends as LF (a git checkout with
    autocrlf, an editor) -- for the file the export writes, its plain SHA-256."""
    return hashlib.sha256(data.removeprefix(b"\xef\xbb\xbf").replace(b"\r\n", b"\n")).hexdigest()


def check_vocab_digest(config: dict, data: bytes, vocab_txt: str, runtime_json: str) -> None:
    """A vocab.txt (its bytes: data) other than the one exported with the model (from another
    bundle, a trimmed student's, edited) gives wrong token ids without any error; runtime.json
    records its SHA-256 (bundles written before it was recorded are not checked)."""
    expected = config.get("vocab_sha256")
    if not expected:
        return
    actual = vocab_digest(data)
    if actual != expected:
        raise BundleError(f"{vocab_txt} is not the vocabulary exported with this model: its SHA-256 is "
                          f"{actual[:12]}..., {runtime_json} records {expected[:12]}... (a vocab.txt "
                          "from another bundle or edited gives wrong token ids)")


def check_graph_names(session, config: dict, path: str) -> None:
    """runtime.json must name exactly the graph's inputs and one of its outputs, and give as
    many labels as that output has columns (when the graph says how many)."""
    graph_inputs = getattr(session, "input_names", None)
    if graph_inputs is not None and sorted(graph_inputs) != sorted(config["inputs"]):
        raise BundleError(f"{path}: inputs {config['inputs']} do not match model.onnx's "
                          f"inputs {list(graph_inputs)}")
    graph_outputs = getattr(session, "output_names", None)
    if graph_outputs is not None and config["output"] not in graph_outputs:
        raise BundleError(f"{path}: output {config['output']!r} is not one of model.onnx's "
                          f"outputs {list(graph_outputs)}")
    for output in getattr(session, "get_outputs", list)():
        columns = (output.shape or [None])[-1] if output.name == config["output"] else None
        if isinstance(columns, int) and columns != len(config["labels"]):
            raise BundleError(f"{path}: {len(config['labels'])} labels, but model.onnx's output "
                              f"{output.name!r} has {columns} columns")


# -- what model.onnx can look up ----------------------------------------------------------

SHAPE_KEEPING = ("Identity", "Cast", "DequantizeLinear")  # an int8 table is dequantized as is


def constant_value(graph, name: str, made_by: dict, folded=None):
    """The array of an initializer or Constant node (through Identity), or of any value the
    session folded at load (`folded(name)`: e.g. Unsqueeze(Constant) in an export made without
    constant folding), else None."""
    value = folded(name) if folded is not None else None
    if isinstance(value, np.ndarray):
        return value
    while name not in graph.initializers:
        node = made_by.get(name)
        if node is None or node.op_type not in ("Constant", "Identity"):
            return None
        if node.op_type == "Constant":
            value = node.attrs.get("value")
            return value if isinstance(value, np.ndarray) else None
        name = node.inputs[0]
    return graph.initializers[name]


def constant_shape(graph, name: str, made_by: dict):
    """The shape of a constant tensor, also through ops that keep it (Cast, DequantizeLinear)."""
    while True:
        value = constant_value(graph, name, made_by)
        if value is not None:
            return value.shape
        node = made_by.get(name)
        if node is None or node.op_type not in SHAPE_KEEPING or not node.inputs:
            return None
        name = node.inputs[0]


def lookups(graph, made_by: dict):
    """(Gather node, rows) for each Gather along axis 0 in a constant 2-D table (the embeddings)."""
    for node in graph.nodes:
        axis = node.attrs.get("axis", 0)
        if node.op_type == "Gather" and isinstance(axis, int) and axis == 0 and len(node.inputs) == 2:
            shape = constant_shape(graph, node.inputs[0], made_by)
            if shape is not None and len(shape) == 2:
                yield node, int(shape[0])


def word_embedding_rows(graph, made_by: dict, input_name: str = "input_ids"):
    """Rows of the table Gather looks input_ids up in (the word embeddings); None if none does."""
    rows = [n for node, n in lookups(graph, made_by) if node.inputs[1] == input_name]
    return min(rows) if rows else None


def position_embedding_rows(graph, made_by: dict, folded=None):
    """How many positions the position embeddings serve, when the graph looks them up the way
    Hugging Face's BERT exports do (dynamo and TorchScript alike): Gather(table,
    Slice(position_ids, starts=0, ...)) of a constant arange buffer -> min(table rows, buffer
    length). None for any other graph (e.g. position ids computed from input_ids)."""
    for node, rows in lookups(graph, made_by):
        sliced = made_by.get(node.inputs[1])
        if sliced is None or sliced.op_type != "Slice":
            continue
        inputs = sliced.inputs + [""] * (5 - len(sliced.inputs))
        buffer = constant_value(graph, inputs[0], made_by, folded)
        starts = (constant_value(graph, inputs[1], made_by, folded) if inputs[1]
                  else np.asarray(sliced.attrs.get("starts", [1])))          # opset < 10: attributes
        steps = constant_value(graph, inputs[4], made_by, folded) if inputs[4] else np.ones(1, np.int64)
        if buffer is None or buffer.dtype.kind not in "iu" or starts is None or steps is None:
            continue
        positions = buffer.reshape(-1)
        if np.any(starts != 0) or np.any(steps != 1) or \
                not np.array_equal(positions, np.arange(positions.size)):
            continue
        return min(rows, positions.size)
    return None


def check_model_fits(session, vocab_size: int, config: dict, paths: tuple) -> None:
    """Refuse a vocabulary larger than model.onnx's word-embedding table (a text holding one of
    the extra tokens would fail inside Gather at predict time; a smaller vocabulary is fine:
    tables may be padded), and a max_length past its position embeddings (a text that long
    would fail). Checked only where the graph shows the table (see the functions above)."""
    runtime_json, vocab_txt, model_onnx = paths
    graph = getattr(getattr(session, "model", None), "graph", None)
    if graph is None:
        return
    made_by = {out: node for node in graph.nodes for out in node.outputs if out}
    rows = word_embedding_rows(graph, made_by)
    if rows is not None and vocab_size > rows:
        raise BundleError(f"{vocab_txt}: {vocab_size} tokens, but the word-embedding table in "
                          f"{model_onnx} has {rows} rows: token ids {rows} to {vocab_size - 1} "
                          "cannot be looked up (vocab.txt does not belong to this model)")
    positions = position_embedding_rows(graph, made_by, getattr(session, "constant", None))
    if positions is not None and config["max_length"] > positions:
        raise BundleError(f"{runtime_json}: max_length {config['max_length']} is more than the "
                          f"{positions} positions of the position embeddings in {model_onnx}")


def vocabulary_size(vocab: dict) -> int:
    """1 + the highest id the tokenizer can produce (an empty line's token never is)."""
    return max((i for token, i in vocab.items() if token), default=-1) + 1


def check_batch_size(batch_size) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    return int(batch_size)


def softmax(logits: np.ndarray) -> np.ndarray:
    """(n, k) -> (n, k) float32 probabilities; shifted by the row max so exp never overflows."""
    z = logits.astype(np.float64)
    z -= z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


class Classifier:
    """Text classifier over an edge bundle; safe to share between threads."""

    def __init__(self, session, tokenizer: WordPieceTokenizer, labels, inputs, output: str,
                 max_length: int, batch_size: int = 32, quantization=None, path=None):
        self.session = session
        self.tokenizer = tokenizer
        self.labels = list(labels)
        self.inputs = list(inputs)
        self.output = output
        self.max_length = int(max_length)
        self.batch_size = check_batch_size(batch_size)
        self.quantization = quantization
        self.path = path

    @classmethod
    def load(cls, bundle_dir, batch_size: int = 32) -> "Classifier":
        """Read bundle_dir/runtime.json, vocab.txt and model.onnx, and check they fit together
        (names, label count, vocabulary and max_length against the embedding tables)."""
        config = read_runtime_config(bundle_dir)
        from .protobuf import ModelError
        from .session import Session  # the graph half, imported when a bundle is loaded

        check_batch_size(batch_size)
        bundle_dir = os.fsdecode(bundle_dir)
        runtime_json, vocab_txt, model_onnx = (os.path.join(bundle_dir, name) for name in BUNDLE_FILES)
        try:
            settings = tokenizer_kwargs(config["tokenizer"])
        except ValueError as e:
            raise BundleError(f"{runtime_json}: {e}") from None
        try:  # UnicodeDecodeError and a missing special token are ValueErrors
            with open(vocab_txt, "rb") as f:
                data = f.read()                   # read once: checked, then parsed
            check_vocab_digest(config, data, vocab_txt, runtime_json)
            tokenizer = WordPieceTokenizer(vocab_from_bytes(data), **settings)
        except BundleError:
            raise
        except ValueError as e:
            raise BundleError(f"{vocab_txt}: {e}") from None
        except FileNotFoundError:
            raise
        except OSError as e:  # no read permission, I/O error
            raise BundleError(cannot_read(vocab_txt, e)) from None
        try:
            session = Session(model_onnx)
        except ModelError as e:  # malformed file, unsupported op, ...
            raise ModelError(f"{model_onnx}: {e}") from None
        except FileNotFoundError:
            raise
        except OSError as e:
            raise ModelError(cannot_read(model_onnx, e)) from None
        check_graph_names(session, config, runtime_json)
        check_model_fits(session, vocabulary_size(tokenizer.vocab), config,
                         (runtime_json, vocab_txt, model_onnx))
        return cls(session, tokenizer, config["labels"], config["inputs"], config["output"],
                   config["max_length"], batch_size=batch_size,
                   quantization=config.get("quantization"), path=bundle_dir)

    def __repr__(self) -> str:
        return (f"Classifier({self.path!r}, labels={self.labels}, max_length={self.max_length}, "
                f"batch_size={self.batch_size}, quantization={self.quantization!r})")

    def logits(self, texts, progress=None) -> np.ndarray:
        """Raw model outputs, float32 (n, n_labels), in input order. progress: None, or a
        callable called as progress(texts_done, texts_total) after each batch (a progress bar)."""
        texts = check_texts(texts, "classify")
        batch_size = check_batch_size(self.batch_size)  # an attribute the app may set
        if progress is not None and not callable(progress):
            raise TypeError(f"progress must be a callable(done, total) or None, got {type(progress).__name__}")
        rows = [self.tokenizer.encode(text, self.max_length) for text in texts]
        order = sorted(range(len(rows)), key=lambda i: len(rows[i]))  # short texts batch together
        out = np.empty((len(rows), len(self.labels)), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            picked = order[start:start + batch_size]
            out[picked] = self._run_batch([rows[i] for i in picked])
            if progress is not None:
                progress(start + len(picked), len(rows))
        return out

    def _run_batch(self, rows: list[list[int]]) -> np.ndarray:
        arrays = pad_batch(rows, self.tokenizer.pad_id)
        feeds = {name: arrays[name] for name in self.inputs}
        (logits,) = self.session.run([self.output], feeds)
        logits = np.asarray(logits)
        if logits.shape != (len(rows), len(self.labels)):
            raise RuntimeError(f"model output {self.output!r} has shape {logits.shape}, expected "
                               f"({len(rows)}, {len(self.labels)}) for {len(self.labels)} labels")
        return logits

    def predict_proba(self, texts, progress=None) -> np.ndarray:
        """Softmax probabilities, float32 (n, n_labels), columns in `labels` order."""
        return softmax(self.logits(texts, progress))

    def predict(self, texts, progress=None) -> list[str]:
        """The most likely label of each text."""
        logits = self.logits(texts, progress)
        return [self.labels[i] for i in logits.argmax(axis=-1)] if len(logits) else []
