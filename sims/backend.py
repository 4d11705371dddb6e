"""sims as a hostctl backend: the ``sim://`` port handler and the virtual bench's tone outputs.

hostctl never looks for the simulator; a caller opts in with :func:`install` (the CLI for
``--sim`` and sim:// ports, the tests in conftest.py), as pyserial's
``protocol_handler_packages`` is meant to be used. Then:

- ``serial_for_url("sim://?board=NAME&seed=N")`` opens :mod:`sims.protocol_sim`, whose
  ``hostctl_bench()`` gives hostctl a :class:`SimBench`: the simulated clock, the board's
  identity and parts, and :class:`sims.tones.SimToneOutput` for tones played into the circuit;
- ``open_output("sim:/path/to.sock")`` is a :class:`sims.tones.SocketToneOutput`: JSON lines to the
  control socket of a bench served on a pty (``python -m sims.bench serve`` prints the path).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hostctl.bench import BoardDefaults, register_output

if TYPE_CHECKING:
    from sims.tones import SimToneOutput, SocketToneOutput


def install() -> None:
    """Register the ``sim://`` serial handler and the ``sim:`` tone output (idempotent)."""
    import serial

    if "sims" not in serial.protocol_handler_packages:
        serial.protocol_handler_packages.append("sims")
    register_output("sim", _socket_output)


def _socket_output(rest: str, *, level_cap_dbfs: float, sample_rate: int) -> SocketToneOutput:
    from sims.tones import SocketToneOutput

    path = rest[2:] if rest.startswith("//") else rest
    return SocketToneOutput(path, level_cap_dbfs=level_cap_dbfs, sample_rate=sample_rate)


class SimBench:
    """hostctl's view of an in-process :class:`sims.bench.VirtualBench`."""

    name = "virtual bench"

    def __init__(self, bench: Any) -> None:
        self.bench = bench

    def clock(self) -> float:
        """Simulated time, plus the host's compute when an in-process host is counted."""
        clock = getattr(self.bench, "clock", None)
        return float(clock() if callable(clock) else self.bench.now_s)

    def identity(self) -> str | None:
        return f"sim={self.bench.board.name}/seed={self.bench.seed}"

    def tone_output(self) -> SimToneOutput:
        from sims.tones import SimToneOutput

        return SimToneOutput(self.bench)

    def defaults(self) -> BoardDefaults:
        b = self.bench
        return BoardDefaults(circuit=b.circuit.name, channels=tuple(b.circuit.channels),
                             resistors=dict(b.board.resistors),
                             capacitance_f=dict(b.board.capacitance_f))
