"""python -m runtime BUNDLE [TEXT ...]: classify texts, one JSON object per line on stdout.

With no TEXT arguments, texts are read from stdin, one per line (UTF-8).
Each output line: {"text": ..., "label": ..., "probabilities": {label: p, ...}}.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import sys

STDIN_CHUNK = 1024  # lines classified at a time, so long inputs stream


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m runtime",
        description="Classify texts with an edge bundle (model.onnx, vocab.txt, runtime.json). "
                    "Prints one JSON object per text: text, label, probabilities.")
    parser.add_argument("bundle", help="bundle directory written by `distill export onnx`")
    parser.add_argument("texts", nargs="*", metavar="TEXT",
                        help="texts to classify; read from stdin, one per line, when none are given")
    parser.add_argument("--batch-size", type=int, default=32, help="texts per forward pass (default 32)")
    args = parser.parse_intermixed_args(argv)
    if args.batch_size < 1:
        parser.error("--batch-size must be at least 1")
    return args


def stdin_chunks(size: int = STDIN_CHUNK):
    stream = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="replace", newline=None) \
        if hasattr(sys.stdin, "buffer") else sys.stdin
    chunk = []
    for line in stream:
        chunk.append(line.rstrip("\n"))
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def stdout_writer():
    """Write UTF-8 whatever the console's encoding is."""
    buffer = getattr(sys.stdout, "buffer", None)
    if buffer is None:
        return sys.stdout.write, sys.stdout.flush
    return (lambda text: buffer.write(text.encode("utf-8"))), buffer.flush


def write_results(clf, texts, write) -> None:
    probabilities = clf.predict_proba(texts)  # (n, n_labels)
    for text, row in zip(texts, probabilities):
        record = {"text": text, "label": clf.labels[int(row.argmax())],
                  "probabilities": {label: float(p) for label, p in zip(clf.labels, row)}}
        write(json.dumps(record, ensure_ascii=False) + "\n")


def main(argv=None) -> int:
    args = parse_args(argv)
    from .classifier import Classifier

    write, flush = stdout_writer()
    try:
        clf = Classifier.load(args.bundle, batch_size=args.batch_size)
        for texts in ([args.texts] if args.texts else stdin_chunks()):
            write_results(clf, texts, write)
            flush()
    except BrokenPipeError:  # piped into `head`: stop quietly (Python docs' recipe)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        return 130
    except (OSError, ValueError) as e:  # missing files, bad bundle (BundleError), bad input
        print(f"error: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # anything the model loader or executor raises
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
