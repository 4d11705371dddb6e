"""The few named exceptions hostctl raises.

Every failure a user can meet maps to one of these, so the CLI can print one clear line
and exit with a meaningful code instead of a traceback.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_PLACE = re.compile(r"\{(\w+)\}")


class HostctlError(Exception):
    """Base of every error hostctl reports to a user (exit code 2 by default)."""

    exit_code = 2
    #: library settings named in the message (setting -> its plain words); see :meth:`naming`
    settings: dict[str, str] = {}
    _template = ""

    def naming(self, **settings: str) -> HostctlError:
        """Mark ``{setting}`` places in the message as the library setting that would fix it.

        The library does not know the CLI's flags: ``str(error)`` says the plain words given
        here ("choose another sample rate") and a front end puts its own name for the setting
        in the same place (:meth:`worded`; the CLI: "choose another --audio-rate").
        Without arguments each ``{setting}`` place is worded as its own name ("{led_vf}" ->
        "led vf"): enough where the message says what the value is.
        """
        if not settings:
            settings = {k: k.replace("_", " ") for k in _PLACE.findall(str(self))}
        self._template, self.settings = str(self), dict(settings)
        self.args = (self.worded({}),)
        return self

    def worded(self, names: Mapping[str, str]) -> str:
        """The message with each named setting worded as ``names`` says (plain words else)."""
        if not self.settings:
            return str(self)
        words = {k: names.get(k, v) for k, v in self.settings.items()}
        return _PLACE.sub(lambda m: words.get(m.group(1), m.group(0)), self._template)


class InputError(HostctlError):
    """Bad user input: a file, a TOML, a CLI value. Names where it is wrong."""

    def __init__(self, message: str, path: str | None = None, line: int | None = None,
                 column: str | None = None) -> None:
        self.path, self.line, self.column = path, line, column
        where = ""
        if path is not None:
            where = str(path)
            if line is not None:
                where += f":{line}"
            if column is not None:
                where += f": column '{column}'"
            where += ": "
        super().__init__(where + message)


class FitError(HostctlError):
    """The data cannot support a fit (e.g. no usable rows for a channel)."""


class DeviceError(HostctlError):
    """Talking to the probe failed: no port, no answer, protocol violations."""

    exit_code = 3


class ProtocolError(DeviceError):
    """A line from the device broke the protocol (bad CRC, wrong id, bad syntax)."""


class DeviceTimeout(DeviceError):
    """The device did not answer within the budget."""


class DeviceReset(DeviceError):
    """The device rebooted mid-session (a boot banner arrived)."""


class LineNoise(DeviceError):
    """A command kept failing on a damaged line: the probe answered, the wire broke it."""

    def __init__(self, port: str, what: str, tries: int, damaged: int, err_replies: int,
                 lost: int, seconds: float) -> None:
        self.port, self.what, self.tries = port, what, tries
        self.damaged, self.err_replies, self.lost = damaged, err_replies, lost
        super().__init__(
            f"noisy serial line to {port}: '{what}' failed {tries} times in {seconds:.1f} s "
            f"({damaged} damaged replies, {err_replies} ERR replies to damaged commands, "
            f"{lost} lost replies): check the USB cable, or try another port")


class AudioError(HostctlError):
    """The sound card cannot play what was asked; the message says how to fix it."""

    exit_code = 4


class ToneRefused(AudioError):
    """This one tone cannot be played (outside the card's band, above the level cap); the
    audio path itself works, so the run plans around the tone."""


class OutputError(HostctlError):
    """A file or folder hostctl writes cannot be written (unwritable, not a folder)."""

    exit_code = 5


class DiskFull(OutputError):
    """The disk filled while a session was being written; the rows before are kept."""

    def __init__(self, session_dir: str, rows: int, kept: bool = True) -> None:
        self.session_dir, self.rows, self.kept = session_dir, rows, kept
        if kept:
            super().__init__(f"disk full: session kept with {rows} rows; free space and run "
                             f"{{resume}} {session_dir}")
            self.naming(resume="resume")
        else:
            super().__init__(f"disk full: no room to start the session in {session_dir}; "
                             "free space and run again")


class SessionBusy(InputError):
    """Another live process writes this session folder (two writers would mix rows)."""

    def __init__(self, session_dir: str, pid: int | None) -> None:
        self.session_dir, self.pid = session_dir, pid
        who = f"process {pid}" if pid else "another process"
        super().__init__(f"session is in use by {who} (one writer per session; wait for it "
                         "or stop it)", session_dir)
