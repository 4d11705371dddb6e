"""A session folder over its life: created and checked before a tone plays, resumed only
with the same probe and settings that fit its rows.

A resume that mixed two boards, or silently dropped an option the user gave, would report
results no single run produced; each such case is refused here in one line, or (options
that may change mid-session) applied and recorded in the header as a new segment.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hostctl.errors import InputError, OutputError
from hostctl.sessionlog import LOCK_NAME

if TYPE_CHECKING:
    from hostctl.runconfig import RunConfig, SessionHeader
    from hostctl.target import Target

#: RunConfig fields an option may change on resume (new segment): planning and reporting.
RESUME_MAY_CHANGE = ("max_tones", "precision", "series", "target", "window_ms",
                     "cap_tolerance")
#: Fields the recorded rows depend on: changing them would mix incompatible data.
RESUME_FIXED = ("circuit", "mode", "capacitance", "installed", "level_dbfs", "led_threshold",
                "led_vf")
#: the run's settings in plain words (errors name the setting; the CLI puts its flag there)
WORDS = {"max_tones": "the tone budget", "precision": "the precision", "series": "the series",
         "target": "the target", "window_ms": "the window", "circuit": "the circuit",
         "mode": "the mode", "capacitance": "the capacitance", "installed": "the installed parts",
         "level_dbfs": "the level", "led_threshold": "the LED threshold",
         "led_vf": "the LED switching voltage", "out": "the output folder",
         "resume": "a resumed run", "force": "forcing it"}


def prepare_out(out: Path) -> bool:
    """A new session folder that exists, is empty and writable, before anything is measured.
    Returns whether it was created (so a run that stops before its first row removes it)."""
    created = not out.exists()
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out}: {{out}} names a file; give a folder for the session"
                          ).naming(out=WORDS["out"])
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _folder_error(out, e) from None
    if any(p.name != LOCK_NAME for p in out.iterdir()):
        raise InputError("output folder is not empty (use {resume} to continue it)",
                         str(out)).naming(resume=WORDS["resume"])
    if not os.access(out, os.W_OK | os.X_OK):
        raise OutputError(f"{out}: the session folder is not writable")
    return created


def discard_if_empty(out: Path, created: bool) -> None:
    """A run that stopped before its session file leaves no trace: its lock goes, and the
    folder too if this run created it."""
    from hostctl.sessionlog import SESSION_NAME

    if (out / SESSION_NAME).exists():
        return
    try:
        (out / LOCK_NAME).unlink(missing_ok=True)
        if created:
            out.rmdir()
    except OSError:
        pass


def _folder_error(out: Path, e: OSError) -> OutputError:
    if e.errno == errno.ENOTDIR or isinstance(e, NotADirectoryError):
        return OutputError(f"{out}: cannot create the session folder: a part of the path is "
                           "a file, not a folder")
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return OutputError(f"{out}: cannot create the session folder: disk full")
    return OutputError(f"{out}: cannot create the session folder: {e.strerror or e}")


def probe_identity(probe: Any) -> str:
    """What tells two probes apart: firmware and board, then what the bench says of itself
    (a USB serial number, a virtual bench's board and seed)."""
    info = getattr(probe, "info", {}) or {}
    parts = [f"{k}={info[k]}" for k in ("fw", "board", "mcu") if info.get(k)]
    from hostctl.bench import bench_for

    who = bench_for(probe).identity()
    return ",".join([*parts, who] if who else parts)


def check_identity(header: SessionHeader, probe: Any, session_dir: str, force: bool) -> None:
    """The probe now must be the one the session was recorded with (unless forced)."""
    then = header.probe_identity
    now = probe_identity(probe)
    if then is None or force or then == now:
        return
    raise InputError(f"session was recorded with another probe ({then}); this one is {now}: "
                     "its rows would mix two circuits (add {force} if the circuit is the same)",
                     session_dir).naming(force=WORDS["force"])


def resume_changes(text: Mapping[str, str], recorded: RunConfig, given: RunConfig,
                   given_names: set[str]) -> dict[str, str]:
    """Options given on resume: those that may change are returned (``field -> value`` for
    the new header segment), those the rows depend on must equal the ``recorded`` ones
    (``text``: the header as written, which the message quotes)."""
    changes: dict[str, str] = {}
    for name in sorted(given_names):
        if name in RESUME_FIXED:
            if _same(getattr(given, name), getattr(recorded, name)):
                continue
            raise InputError(f"{{{name}}} cannot change on resume: the session's rows were "
                             f"recorded with {text.get(name) or '(none)'}; start a new "
                             "session with {out} for other settings").naming(
                                 **{name: WORDS.get(name, name)}, out=WORDS["out"])
        if name in RESUME_MAY_CHANGE:
            changes[name] = str(getattr(given, name))
    return changes


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b) <= 1e-12 * max(abs(a), abs(b), 1e-300)
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b


def resume_target(header: SessionHeader, given: Target | None, session_dir: str
                  ) -> tuple[Target, dict[str, str]]:
    """The session's target, re-read from its file and checked against the recorded hash;
    or ``given`` (an explicit --target), which then starts a new segment. A file that is
    gone leaves the copy the header carries (``recorded``), if any."""
    from hostctl.advice import target_to_meta
    from hostctl.target import DEFAULT_SOURCE, default_target, load_target

    if given is not None:
        return given, {**given.meta(), "target_spec": target_to_meta(given)}
    meta, recorded = header.text, header.config.target
    path = meta.get("target_path") or meta.get("target") or DEFAULT_SOURCE
    if path == DEFAULT_SOURCE:
        return recorded or default_target(), {}
    try:
        tgt = load_target(path)
    except InputError as e:
        if recorded is not None and not os.path.exists(path):
            return recorded, {}
        raise InputError(f"cannot re-read the session's target ({e}); pass {{target}} FILE",
                         session_dir).naming(target="a target") from None
    want = meta.get("target_sha256")
    if want and tgt.sha256 != want:
        raise InputError(f"the target file {path} changed since the session started; pass "
                         f"{{target}} {path} to use it as it is now (a new segment)",
                         session_dir).naming(target="the target")
    return tgt, {}
