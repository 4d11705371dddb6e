"""The session file: every measurement appended and fsynced the moment it arrives.

A session is the measurement CSV (see README) with ``# key: value`` metadata first, so
``hostctl fit SESSION.csv`` re-fits it offline and ``--resume`` continues it. A kill at
any instant leaves at most one partial last line, which reading ignores and resuming cuts.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from hostctl.dataset import COLUMNS, Measurement, MeasurementSet, format_row
from hostctl.errors import DiskFull, InputError, OutputError, SessionBusy
from hostctl.files import read_regular

SESSION_NAME = "session.csv"
LOCK_NAME = "session.lock"
FORMAT = "hostctl-session/1"


class Recorder:
    """Append-only writer; one fsync per measurement batch (one tone).

    Writes go straight to the file descriptor, so a failed write (disk full) is cut back to
    the last complete line at once and nothing stays buffered to fail again on close.
    """

    def __init__(self, path: str | os.PathLike, meta: dict[str, str] | None = None,
                 *, resume: bool = False, rows: int = 0) -> None:
        self.path = Path(path)
        self.columns: tuple[str, ...] = COLUMNS
        self._fd = -1
        #: data rows in the file (those written before, on resume, included)
        self.rows = rows
        self._created = not resume
        try:
            if resume:
                _cut_partial_line(self.path)
                self.columns = _header_columns(self.path)
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
            else:
                if self.path.exists():
                    raise InputError("session file exists already (use {resume})",
                                     str(self.path)).naming(resume="a resumed run")
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL,
                                   0o644)
        except OSError as e:
            raise _write_error(self.path, e, rows, kept=resume) from None
        self._size = os.fstat(self._fd).st_size
        if not resume:
            head = {"format": FORMAT, **(meta or {})}
            text = "".join(f"# {k}: {_one_line(v)}\n" for k, v in head.items())
            self._write(text + ",".join(COLUMNS) + "\n")

    def note(self, key: str, value: str) -> None:
        """Metadata that arrives mid-run (e.g. a reset); readers merge it into meta."""
        self._write(f"# {key}: {_one_line(value)}\n")

    def append(self, rows: list[Measurement]) -> None:
        self._write("".join(format_row(m, self.columns) + "\n" for m in rows))
        self.rows += len(rows)

    def _write(self, text: str) -> None:
        data = text.encode("utf-8")
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view):]
            os.fsync(self._fd)
        except OSError as e:
            self._fail(e)
        self._size += len(data)

    def _fail(self, e: OSError) -> None:
        """Cut the file back to its last complete write; a new session holding no row yet
        is removed (an empty session.csv must not be left in place of nothing)."""
        try:
            os.ftruncate(self._fd, self._size)
        except OSError:
            pass
        self.close()
        kept = True
        if self._created and self.rows == 0:
            try:
                self.path.unlink()
                kept = False
            except OSError:
                pass
        raise _write_error(self.path, e, self.rows, kept) from None

    def close(self) -> None:
        if self._fd >= 0:
            try:
                os.close(self._fd)
            finally:
                self._fd = -1

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SessionLock:
    """One writer per session folder: an exclusive ``flock`` on ``DIR/session.lock``.

    The kernel drops the lock when its process dies, so the lock of a killed run is stale
    by construction and the next run takes it over; the pid in the file only names the
    holder in the message.
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        import fcntl

        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise _write_error(self.path, e, 0, kept=False) from None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            pid = _read_pid(self._fd)
            os.close(self._fd)
            self._fd = -1
            raise SessionBusy(str(self.folder), pid) from None
        try:   # best effort: the pid only improves the other writer's message
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            pass

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)      # closing drops the flock
            self._fd = -1

    def __enter__(self) -> SessionLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _write_error(path: Path, e: OSError, rows: int, kept: bool = True) -> OutputError:
    """Disk full (or over quota) keeps a resumable session; anything else names the path."""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFull(str(path.parent), rows, kept)
    return OutputError(f"{path}: cannot write the session: {e.strerror or e}")


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
        head = read_regular(path, "data file", limit=64)
    except InputError:
        return False
    return head.startswith(f"# format: {FORMAT.split('/')[0]}".encode())


def read_session(path: str | os.PathLike) -> MeasurementSet:
    """Read a session, ignoring a partial last line; an empty session is allowed."""
    p = Path(path)
    raw = read_regular(p, "session file")
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
    # into columns (hostctl.rowstore), as a CSV file is read: a refit reads arrays, and a
    # resumed run's list is made only when it appends
    return MeasurementSet.parse_csv(text, str(p), compact=True)
