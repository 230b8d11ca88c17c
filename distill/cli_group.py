"""The click group of `distill` and `python -m export`: a command stopped by Ctrl-C exits 130
and one stopped by SIGTERM exits 143, after the output it was writing has been cleaned away,
as shells and CI runners expect. click alone exits 1 on Ctrl-C, the code of a bad-input error,
and Python's default SIGTERM kills the process without running any cleanup, which left the
hidden temporary directory of an atomic write behind. It also keeps printing from failing on an
output encoding that lacks a character (never_fail_to_print)."""
from __future__ import annotations

import signal
import sys

import click

INTERRUPTED, TERMINATED = 130, 128 + signal.SIGTERM


class Terminated(BaseException):
    """SIGTERM, raised in the main thread like KeyboardInterrupt so that cleanup code runs."""


def _raise_terminated(signum, frame):
    raise Terminated()


def never_fail_to_print() -> None:
    """A character the output's encoding lacks is printed as an escape (\\u4e2d), not a crash:
    on Windows a file or pipe gets the ANSI code page (cp1252), and a Chinese label name in a
    summary raised UnicodeEncodeError after the run was done."""
    for stream in (sys.stdout, sys.stderr):
        if getattr(stream, "errors", None) == "strict" and hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")


class Group(click.Group):
    def invoke(self, ctx):
        never_fail_to_print()
        try:
            previous = signal.signal(signal.SIGTERM, _raise_terminated)
        except ValueError:              # not the main thread: leave signals alone
            previous = None
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            raise click.exceptions.Exit(INTERRUPTED) from None
        except Terminated:
            click.echo("Terminated.", err=True)
            raise click.exceptions.Exit(TERMINATED) from None
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
