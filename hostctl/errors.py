"""The few named exceptions hostctl raises.

Every failure a user can meet maps to one of these, so the CLI can print one clear line
and exit with a meaningful code instead of a traceback.
"""

from __future__ import annotations


class HostctlError(Exception):
    """Base of every error hostctl reports to a user (exit code 2 by default)."""

    exit_code = 2


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


class AudioError(HostctlError):
    """The sound card cannot play what was asked; the message says how to fix it."""

    exit_code = 4
