"""Reading user files safely, and plain ASCII numbers.

A FIFO, a character device or a directory given where a data file belongs must be refused
in one line, never block the run or read forever: files are opened non-blocking and checked
with ``fstat`` before a byte is read (checking the name first would race with a swap).
"""

from __future__ import annotations

import math
import os
import re
import stat

from hostctl.errors import InputError

#: What the file kinds are called in a message.
_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))


def _kind(mode: int) -> str:
    for test, name in _KINDS:
        if test(mode):
            return name
    return "not a regular file"


def open_regular(path: str | os.PathLike, what: str = "file") -> int:
    """An fd open for reading on a regular file; InputError for anything else."""
    p = os.fspath(path)
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        raise InputError("no such file", str(p)) from None
    except IsADirectoryError:
        raise InputError(f"is a directory, not a {what}", str(p)) from None
    except OSError as e:
        raise InputError(f"cannot read {what}: {e.strerror}", str(p)) from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise InputError(f"is {_kind(st.st_mode)}, not a {what}", str(p))
    os.set_blocking(fd, True)
    return fd


def read_regular(path: str | os.PathLike, what: str = "file", limit: int | None = None
                 ) -> bytes:
    """The bytes of a regular file (the first ``limit`` bytes if given)."""
    fd = open_regular(path, what)
    try:
        with os.fdopen(fd, "rb") as fh:
            return fh.read() if limit is None else fh.read(limit)
    except OSError as e:
        raise InputError(f"cannot read {what}: {e.strerror}", os.fspath(path)) from None


#: A decimal number as people and programs write it: ASCII digits only, no ``_`` groups.
_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_SPECIAL = re.compile(r"[+-]?(?:inf|infinity|nan)", re.IGNORECASE)


def ascii_float(text: str) -> float:
    """``float(text)`` restricted to ASCII decimal notation.

    Python's ``float`` also takes ``1_000`` and digits of other scripts (``١٠٠٠``); in a
    data file or an option those are typos or lookalikes, so ValueError, like a non-number.
    ``inf``/``nan`` parse (callers reject them with a better message).
    """
    s = text.strip()
    if _NUMBER.fullmatch(s) or _SPECIAL.fullmatch(s):
        return float(s)
    raise ValueError(f"not an ASCII decimal number: {text!r}")


def finite(text: str) -> float | None:
    """A finite ASCII number, or None."""
    try:
        v = ascii_float(text)
    except ValueError:
        return None
    return v if math.isfinite(v) else None
