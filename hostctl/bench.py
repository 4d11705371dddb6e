"""The bench behind a probe's port: its clock, who it is, a tone output of its own, its parts.

hostctl asks the bench, never whether it is simulated. A serial object describes the bench
it reaches through one method, ``hostctl_bench()`` (a backend's port handler provides it,
as the virtual bench's ``sim://`` does); any other port is hardware: the host's clock, the
sound card for tones, no board defaults, a USB serial number when the port has one.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from hostctl.audio import ToneOutput


@dataclass(frozen=True)
class BoardDefaults:
    """What a bench knows about the board on it: the circuit and its parts as built."""

    circuit: str
    channels: tuple[str, ...]
    resistors: Mapping[str, float] = field(default_factory=dict)
    capacitance_f: Mapping[str, float] = field(default_factory=dict)


class Bench(Protocol):
    """The far end of a probe port, as far as hostctl needs to know it."""

    #: how a report names the bench's tone output when it plays its own tones
    name: str

    def clock(self) -> float:
        """Seconds on the bench's own clock (deadlines and bench time use it)."""
        ...

    def identity(self) -> str | None:
        """What tells this bench from another of the same firmware (session checks)."""
        ...

    def tone_output(self) -> ToneOutput | None:
        """The bench's own tone output, or None: tones go through the sound card."""
        ...

    def defaults(self) -> BoardDefaults | None:
        """The board's circuit and parts when the bench knows them (None: ask the user)."""
        ...


class HardwareBench:
    """A real port: the host's clock, the sound card, the USB serial number if any."""

    name = "sound card"

    def __init__(self, port: str = "") -> None:
        self.port = port

    def clock(self) -> float:
        return time.monotonic()

    def identity(self) -> str | None:
        sn = usb_serial(self.port)
        return f"serial_number={sn}" if sn else None

    def tone_output(self) -> ToneOutput | None:
        return None

    def defaults(self) -> BoardDefaults | None:
        return None


#: tone outputs that backends add: device prefix (``"sim"`` for ``"sim:..."``) -> a factory
#: called with the rest of the device string, ``level_cap_dbfs`` and ``sample_rate``
OUTPUTS: dict[str, Callable[..., ToneOutput]] = {}


def register_output(prefix: str, factory: Callable[..., ToneOutput]) -> None:
    """Let ``open_output("PREFIX:...")`` reach a backend's own tone output (the backend
    calls this when a caller opts in to it, as pyserial's URL handlers are registered)."""
    OUTPUTS[prefix] = factory


def bench_of(serial_obj: Any, port: str = "") -> Bench:
    """The bench a serial object reaches (a port handler's own, else hardware)."""
    describe = getattr(serial_obj, "hostctl_bench", None)
    bench = describe() if callable(describe) else None
    return bench if bench is not None else HardwareBench(port)


def bench_for(probe: Any) -> Bench:
    """The bench behind an open probe (or anything with ``serial`` and ``port``)."""
    return bench_of(getattr(probe, "serial", None), str(getattr(probe, "port", "") or ""))


def usb_serial(port: str) -> str | None:
    """The USB serial number of ``port`` (a device path or a link to one), if it has one."""
    if not port:
        return None
    try:
        from serial.tools import list_ports

        real = os.path.realpath(port)
        for p in list_ports.comports():
            if p.device in (port, real) and p.serial_number:
                return str(p.serial_number)
    except Exception:  # noqa: BLE001 - listing ports is best effort on odd platforms
        return None
    return None
