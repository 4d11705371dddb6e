"""Terminal behaviour shared by the commands: --quiet, -v, and a progress bar that fits.

The global flags live on the root click context (``hostctl -q ...``, ``hostctl -v ...``);
commands ask :func:`quiet` rather than taking their own copies.
"""

from __future__ import annotations

import logging
import math
import shutil
import sys
from typing import Any

import click


def _root_obj() -> dict[str, Any]:
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return {}
    obj = ctx.find_root().obj
    return obj if isinstance(obj, dict) else {}


def quiet() -> bool:
    """``hostctl -q``: no progress, no notes on stderr; results and errors only."""
    return bool(_root_obj().get("quiet"))


def say(text: str) -> None:
    """A note for the user on stderr, unless --quiet."""
    if not quiet():
        click.echo(text, err=True)


def set_trace(on: bool) -> None:
    """``hostctl -v``: every serial line sent (>) and received (<) on stderr (off again
    for the next in-process run without -v)."""
    log = logging.getLogger("hostctl.serial")
    for h in [h for h in log.handlers if isinstance(h, _ToStderr)]:
        log.removeHandler(h)
    if on:
        log.addHandler(_ToStderr())
    log.setLevel(logging.DEBUG if on else logging.NOTSET)


class _ToStderr(logging.Handler):
    """Writes to whatever sys.stderr is at the time (tests redirect it)."""

    def emit(self, record: logging.LogRecord) -> None:
        click.echo(f"serial {record.getMessage()}", err=True)


class Progress:
    """The calibrate progress callback: a bar as wide as the terminal that ends full
    (even when the precision is reached before the tone budget), or one plain line per
    tone when stderr is not a terminal (logs, CI)."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.bar: Any = None
        self.text = ""

    def __call__(self, done: int, budget: int, f: float, worst: float, name: str) -> None:
        unc = "" if math.isnan(worst) else f" worst ±{100 * worst:.2f}% ({name})"
        self.text = f"{f:.0f} Hz{unc}"
        if not self.tty:
            click.echo(f"{done:>3}/{budget} tones  {f:>8.1f} Hz{unc}", err=True)
            return
        if self.bar is None:
            self.bar = click.progressbar(length=budget, label="tones", file=sys.stderr,
                                         width=0, show_eta=False, show_percent=False,
                                         show_pos=True, item_show_func=self._item)
            self.bar.__enter__()
        self.bar.update(max(0, done - self.bar.pos))

    def _item(self, _: object) -> str:
        room = shutil.get_terminal_size((80, 24)).columns - 36   # the bar keeps >= 10 cells
        return self.text if len(self.text) <= room else self.text[:max(0, room)]

    def finish(self) -> None:
        """Complete the bar (the run may stop early: precision reached) and end its line."""
        if self.bar is None:
            return
        self.bar.length = max(self.bar.pos, 1)
        self.bar.finished = True
        self.text = "done"
        self.bar.render_progress()
        self.bar.__exit__(None, None, None)
        self.bar = None
