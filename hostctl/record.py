"""The session file: every measurement appended and fsynced the moment it arrives.

A session is the measurement CSV (see README) with ``# key: value`` metadata first, so
``hostctl fit SESSION.csv`` re-fits it offline and ``--resume`` continues it. A kill at
any instant leaves at most one partial last line, which reading ignores and resuming cuts.
"""

from __future__ import annotations

import os
from pathlib import Path

from hostctl.errors import InputError
from hostctl.measurements import COLUMNS, Measurement, MeasurementSet, format_row

SESSION_NAME = "session.csv"
FORMAT = "hostctl-session/1"


class Recorder:
    """Append-only writer; one fsync per measurement batch (one tone)."""

    def __init__(self, path: str | os.PathLike, meta: dict[str, str] | None = None,
                 *, resume: bool = False) -> None:
        self.path = Path(path)
        self.columns: tuple[str, ...] = COLUMNS
        if resume:
            _cut_partial_line(self.path)
            self.columns = _header_columns(self.path)
            self._fh = open(self.path, "a", encoding="utf-8")
        else:
            if self.path.exists():
                raise InputError("session file exists already (use --resume)", str(self.path))
            self._fh = open(self.path, "x", encoding="utf-8")
            head = {"format": FORMAT, **(meta or {})}
            text = "".join(f"# {k}: {_one_line(v)}\n" for k, v in head.items())
            text += ",".join(COLUMNS) + "\n"
            self._write(text)

    def note(self, key: str, value: str) -> None:
        """Metadata that arrives mid-run (e.g. a reset); readers merge it into meta."""
        self._write(f"# {key}: {_one_line(value)}\n")

    def append(self, rows: list[Measurement]) -> None:
        self._write("".join(format_row(m, self.columns) + "\n" for m in rows))

    def _write(self, text: str) -> None:
        self._fh.write(text)
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _one_line(v: object) -> str:
    return str(v).replace("\n", " ").replace("\r", " ")


def _header_columns(path: Path) -> tuple[str, ...]:
    """The columns a session was started with (an older one may lack the newest)."""
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip() and not line.startswith("#"):
                cols = tuple(c.strip() for c in line.strip().split(","))
                return cols if cols[0] == COLUMNS[0] else COLUMNS
    return COLUMNS


def _cut_partial_line(path: Path) -> None:
    """Drop a last line without its newline (the write a kill interrupted)."""
    with open(path, "rb+") as fh:
        data = fh.read()
        if data and not data.endswith(b"\n"):
            fh.truncate(data.rfind(b"\n") + 1)
            fh.flush()
            os.fsync(fh.fileno())


def is_session(path: str | os.PathLike) -> bool:
    """Does the file start like a calibrate session (``# format: hostctl-session/...``)?"""
    try:
        with open(path, "rb") as fh:
            return fh.read(64).startswith(f"# format: {FORMAT.split('/')[0]}".encode())
    except OSError:
        return False


def read_session(path: str | os.PathLike) -> MeasurementSet:
    """Read a session, ignoring a partial last line; an empty session is allowed."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise InputError(f"cannot read session: {e.strerror}", str(p)) from None
    if raw and not raw.endswith(b"\n"):
        raw = raw[: raw.rfind(b"\n") + 1]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"session is not UTF-8 (byte {e.start})", str(p)) from None
    lines = [ln for ln in text.splitlines() if ln.strip()]
    body = [ln for ln in lines if not ln.startswith("#")]
    if len(body) == 1 and body[0].startswith(COLUMNS[0]):
        # header only (a run stopped before its first tone; notes may follow the header)
        ms = MeasurementSet(meta={})
        for ln in lines:
            if ln.startswith("#"):
                k, _, v = ln.lstrip("#").partition(":")
                ms.meta[k.strip()] = v.strip()
        return ms
    return MeasurementSet.parse_csv(text, str(p))
