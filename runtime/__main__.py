"""python -m runtime BUNDLE [TEXT ...]: classify texts, one JSON object per line on stdout.

Every argument after the first `--` is a text (`python -m runtime BUNDLE -- "-5%" --`), so a
text may start with '-'; the bundle may follow `--` as well.

With no TEXT arguments, texts are read from stdin, one per line (UTF-8; a leading BOM and
CRLF line ends are dropped, undecodable bytes become U+FFFD). Each line is answered as soon as it
has been read, so an app can drive the command line by line; lines that arrive together are
classified together (up to STDIN_CHUNK at a time), so a piped file still runs in large batches.
Each output line: {"text": ..., "label": ..., "probabilities": {label: p, ...}}.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import queue
import sys
import threading

from . import __version__

STDIN_CHUNK = 1024  # most lines classified at a time


def split_at_double_dash(argv: list[str]) -> tuple[list[str], list[str]]:
    """(arguments before the first "--", every argument after it): after "--" each argument is
    a text, a later "--" included (argparse's parse_intermixed_args would drop them all)."""
    if "--" not in argv:
        return argv, []
    cut = argv.index("--")
    return argv[:cut], argv[cut + 1:]


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m runtime",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Classify texts with an edge bundle (model.onnx, vocab.txt, runtime.json).\n"
                    "Prints one JSON object per text: text, label, probabilities.",
        epilog="examples:\n"
               '  python -m runtime BUNDLE "a gripping film" "dull and lifeless"\n'
               '  python -m runtime BUNDLE -- "-5% today" "--"   # after --, every argument is a text\n'
               "  cat texts.txt | python -m runtime BUNDLE --batch-size 64")
    # nargs="?" and a check below: parse_intermixed_args would call TEXT required as well
    parser.add_argument("bundle", nargs="?", help="bundle directory written by `distill export onnx`")
    parser.add_argument("texts", nargs="*", metavar="TEXT",
                        help="texts to classify; read from stdin, one per line, when none are given. "
                             "Put -- before texts that start with '-': every argument after the "
                             "first -- is a text (the bundle too may follow it)")
    parser.add_argument("--batch-size", type=int, default=32, help="texts per forward pass (default 32)")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}",
                        help="print the runtime's version and exit")
    argv = sys.argv[1:] if argv is None else list(argv)
    options, literal = split_at_double_dash(argv)
    args = parser.parse_intermixed_args(options)
    positionals = ([] if args.bundle is None else [args.bundle]) + args.texts + literal
    if not positionals:
        parser.error("the following arguments are required: bundle")
    args.bundle, args.texts = positionals[0], positionals[1:]
    if args.batch_size < 1:
        parser.error("--batch-size must be at least 1")
    return args


def read_lines(stream, lines: queue.Queue) -> None:
    """Put each line of `stream` on `lines`, then None; an exception is put in its place."""
    try:
        for line in stream:
            lines.put(line[:-2] if line.endswith("\r\n") else line.rstrip("\n"))
        lines.put(None)
    except BaseException as e:  # handed to the reading side, which raises it
        lines.put(e)


def stdin_chunks(size: int = STDIN_CHUNK, stream=None):
    """Lists of stdin lines: each list is every line read so far, at most `size`.

    A thread reads; this generator waits only for the first line of a chunk, so a line that
    arrives alone is classified at once instead of waiting for `size` lines or end of input.
    """
    if stream is None:
        stream = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8-sig", errors="replace",
                                  newline="\n") if hasattr(sys.stdin, "buffer") else sys.stdin
    lines: queue.Queue = queue.Queue(maxsize=4 * size)
    threading.Thread(target=read_lines, args=(stream, lines), daemon=True).start()
    while True:
        item = wait_for(lines)
        chunk = []
        while isinstance(item, str):
            chunk.append(item)
            if len(chunk) == size:
                break
            try:
                item = lines.get_nowait()
            except queue.Empty:
                break
        if chunk:
            yield chunk
        if item is None:
            return
        if isinstance(item, BaseException):
            raise item


def wait_for(lines: queue.Queue):
    """The next item, waiting in short steps: on Windows (before Python 3.14) a wait without a
    timeout cannot be interrupted, so Ctrl-C would not stop the command while it waits for input."""
    while True:
        try:
            return lines.get(timeout=0.25)
        except queue.Empty:
            continue


def argument_text(text: str) -> str:
    """A TEXT argument as stdin would give it: bytes that are not UTF-8 become U+FFFD."""
    try:  # POSIX hands undecodable argv bytes over as lone surrogates (surrogateescape)
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")


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
        texts_given = [[argument_text(t) for t in args.texts]] if args.texts else None
        for texts in (texts_given or stdin_chunks()):
            write_results(clf, texts, write)
            flush()
    except BrokenPipeError:  # piped into `head`: stop quietly (Python docs' recipe)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        return 130
    except (OSError, ValueError) as e:  # missing files, bad bundle (BundleError), bad input
        print(f"Error: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # anything the model loader or executor raises
        print(f"Error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
