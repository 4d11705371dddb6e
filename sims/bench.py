"""The virtual bench: a simulated color-organ board + Arduino probe + USB serial link.

Physics model (what a MEASURE window sees)
-------------------------------------------
* The PC's sound card plays a sine of frequency ``f`` at ``level_dbfs``; its peak voltage
  is ``A = peak_v_at_0dbfs * 10**(level_dbfs/20)`` (board parameter, e.g. 1.0 V at 0 dBFS).
  Tones above the board's ``audio_max_hz`` (if set) cannot be played: InputError.
* The board is a netlist (sims/boards/NAME.toml names it) run through ngspice at the
  board's *true* part values (sims/physics.py, sims/spice.py): ``V(node)`` per volt of the
  sound card ``Vs``. Every input sits on a mid-rail bias (2.5 V); A0 is the probe pin
  ``a0`` (the common input after the probe's coupling capacitor and bias network), A1..A3
  the pins ``a1..a3``: ``bias + A |V(aK)| sin(2 pi f t + phi + arg V(aK))``, each with its
  own amplitude and phase. A channel the board lacks (e.g. a plain low-pass board) stays
  at the bias. Without ngspice the bench says so once and falls back to hostctl's own
  closed-form |H| (no phase, no front end): not an independent truth.
* True values: ``nominal * (1 + tol * u)`` with ``u`` uniform in [-1, 1], drawn once per
  board from the seed (resistor and capacitor tolerances separately; the other netlist
  parts, e.g. source resistance, coupling capacitors, ESR, from the board's ``[parts]``);
  exactly nominal when the tolerance is 0.
* ADC: ``count = clamp(floor(v / vref * 2**bits + noise), 0, 2**bits - 1)`` with gaussian
  ``noise`` of ``noise_lsb`` LSB (0 for the notebook board: pure quantization).
* LEDs: the pin of channel ``i`` reads HIGH while that channel's filter output node
  (``low``, ``band``, ``high``: not the probe pin) exceeds ``led_threshold_v[i]``.
  The notebook board sets the threshold to ``A(-6 dBFS) / sqrt(2)``, so at -6 dBFS an
  LED is lit during part of every cycle exactly when ``|H| > 1/sqrt(2)`` - the notebook's
  LED rule.
* Sampling: the firmware loop takes rounds (A0, A1, A2, A3 conversions, then the three
  LED pins) at ``rate_hz`` rounds per second (board parameter: 5751/s, what the
  firmware achieves per firmware/README.md; HELLO reports ``nominal_rate_hz`` = 5700
  until the first MEASURE), conversion ``c`` at ``t_k + c/(5 rate)``, LEDs at ``t_k + 4/(5 rate)``
  (a channel is sampled as its own conversion starts; the firmware selects the next channel
  during each conversion, which does not move these instants: under simavr the starts are
  601 of a round's 2782 CPU cycles apart, 0.216 of a round),
  ``t_k = t0 + k/rate``, until ``ms`` have elapsed (``n = ceil(ms*rate/1000)`` rounds,
  at most 65535). The tone's phase ``phi`` is random per window (the PC and the
  Arduino share no clock). Silence: every input at the bias.
* The statistics are then computed by sims/device_core.py with the firmware's integer
  formulas, so the reply is what the real firmware would print for these samples.

Time and the serial link
------------------------
``bench.now_s`` is simulated time (the host's clock). Bytes take 10 bits at the board's
baud rate each way; a MEASURE takes its window; a reboot takes ``boot_s``. Reading
advances ``now_s`` to when the bytes arrive (or by the timeout); nothing ever sleeps.
Faults (sims/faults.py) corrupt, drop or duplicate bytes, delay replies, reboot or
unplug the board.

The clock hostctl reads (:meth:`clock`) is ``now_s + waited_s + host_s``: what the host's
sound card output waits per tone (fades, latency, settle: sims.tones.SimToneOutput charges
it with :meth:`wait`), and, for a host in this process (``count_host()``), its own compute
between requests, as process CPU seconds from the end of one bench call to the start of the
next. The physics runs on ``now_s`` alone, so a seed gives the same readings however fast
the host is (and as before these were counted).

Run ``python -m sims.bench serve --board bench`` to get a real pseudo-terminal that any
serial program can open, plus a control socket for the tone (JSON lines): sims/pty_server.py.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hostctl.errors import DeviceError, InputError
from sims import physics, wiring
from sims.boards import BOARDS_DIR, CHANNEL_ORDER, Board, draw_true_values, list_boards, load_board
from sims.device_core import MAX_ROUNDS, DeviceCore, Window
from sims.faults import ByteFaults, Disconnected, FaultConfig, parse_faults, render_reply

if TYPE_CHECKING:
    from hostctl.circuits import Circuit
    from hostctl.protocol import MeasureResult

__all__ = ["BOARDS_DIR", "CHANNEL_ORDER", "Board", "Disconnected", "VirtualBench", "list_boards",
           "load_board", "make_bench"]


# ------------------------------------------------------------------------------ bench
@dataclass
class _Out:
    t: float            # simulated time the byte has fully arrived at the host
    b: int
    hold_real_s: float = 0.0   # pty server: hold this byte back in real time (delay fault)


@dataclass
class VirtualBench:
    """A simulated board + probe + serial link (see the module docstring)."""

    board: Board
    seed: int = 0
    faults: FaultConfig | None = None
    now_s: float = 0.0

    def __post_init__(self) -> None:
        import numpy as np

        from hostctl.circuits import get_circuit

        if isinstance(self.faults, str):
            self.faults = parse_faults(self.faults)
        self.faults = self.faults or FaultConfig()
        self.circuit: Circuit = get_circuit(self.board.circuit)
        b = self.board
        self.drawn = draw_true_values(b, self.circuit.resistors, self.seed)
        self.true_values: dict[str, float] = self.drawn.resistors
        self.true_capacitances: dict[str, float] = self.drawn.capacitances
        #: every netlist value ngspice runs with (sections, source, probe front end, ESR)
        self.true_params: dict[str, float] = self.drawn.params
        self._response: tuple[physics.NodeResponse, dict[str, str], dict[str, str]] | None = None
        self._rng = np.random.default_rng([int(self.seed), 1])
        self._byte_faults = ByteFaults(self.faults, int(self.seed))
        self.tone_hz: float | None = None
        self.level_dbfs: float = -6.0
        self.byte_s = 10.0 / b.baudrate
        self.core = DeviceCore(self._measure_window, nominal_rate_hz=b.nominal_rate_hz)
        self._out: deque[_Out] = deque()
        self._host_tx_free = 0.0
        self._dev_tx_free = 0.0
        self._dev_free = 0.0
        self._booting_until = -1.0
        self._exec_t = 0.0
        self._exec_end = 0.0
        self.disconnected = False
        self.dead = False        # fault dead@N: rebooted, and never answers again
        self.replug_at: float | None = None   # unplug:S@N: when re-opening works again
        self.commands = 0        # complete command lines received (session total)
        self.replies = 0         # reply lines sent (session total)
        self.boots = 0
        self.windows = 0
        self._phasor_cache: dict[float, physics.Phasors] = {}
        #: what the host's tone output waited, and its compute between its requests (see
        #: the module docstring): on the host's clock, not the physics'
        self.waited_s = 0.0
        self.host_s = 0.0
        self._host_clock: Callable[[], float] | None = None
        self._host_mark = 0.0

    # ------------------------------------------------------------------ the host's time
    def count_host(self, clock: Callable[[], float] = time.process_time) -> None:
        """Count the host's compute between requests from now on (an in-process host)."""
        if self._host_clock is None:
            self._host_clock, self._host_mark = clock, clock()

    def charge_host(self) -> float:
        """The host is back: count what it computed since the bench last answered; the
        bench clock as the host sees it."""
        if self._host_clock is not None:
            t = self._host_clock()
            self.host_s += max(0.0, t - self._host_mark)
            self._host_mark = t
        return self.now_s + self.waited_s + self.host_s

    def wait(self, seconds: float) -> None:
        """The host's tone output waits (fades, latency, settle): its clock runs on."""
        self.charge_host()
        self.waited_s += max(0.0, float(seconds))
        self._host_resumes()

    def _host_resumes(self) -> None:
        """The bench has answered: the host's own time starts again now."""
        if self._host_clock is not None:
            self._host_mark = self._host_clock()

    def clock(self) -> float:
        """Seconds on the bench clock a host reads: physics time plus the host's compute."""
        return self.charge_host()

    # ------------------------------------------------------------------ physics
    @property
    def adc_noise_lsb(self) -> float:
        return self.board.noise_lsb

    @property
    def rate_hz(self) -> float:
        return self.board.rate_hz

    def set_tone(self, freq_hz: float | None, level_dbfs: float = -6.0) -> None:
        """What the sound card plays from now on; None (or 0) = silence."""
        self.charge_host()
        try:
            self._set_tone(freq_hz, level_dbfs)
        finally:
            self._host_resumes()

    def _set_tone(self, freq_hz: float | None, level_dbfs: float) -> None:
        if freq_hz is None or freq_hz == 0:
            self.tone_hz = None
            return
        f = float(freq_hz)
        lvl = float(level_dbfs)
        if not (math.isfinite(f) and f > 0):
            raise InputError(f"tone frequency must be a positive number of Hz, got {freq_hz}")
        if self.board.audio_max_hz is not None and f > self.board.audio_max_hz:
            raise InputError(f"{f:g} Hz is above what board '{self.board.name}''s sound card "
                             f"plays ({self.board.audio_max_hz:g} Hz)")
        if not (math.isfinite(lvl) and lvl <= 0):
            raise InputError(f"tone level must be <= 0 dBFS (the sound card clips), got {lvl}")
        self.tone_hz, self.level_dbfs = f, lvl

    def phasors(self, freq_hz: float) -> physics.Phasors:
        """Complex volts per volt of the sound card: A0..A3 pins and the LED nodes (ngspice)."""
        f = float(freq_hz)
        ph = self._phasor_cache.get(f)
        if ph is None:
            if self._response is None:
                self._response = physics.board_response(self.board, self.drawn)
            ph = physics.phasors_at(*self._response, f)
            if len(self._phasor_cache) > 4096:
                self._phasor_cache.clear()
            self._phasor_cache[f] = ph
        return ph

    def gains(self, freq_hz: float) -> list[float]:
        """[1, |V(a1)/V(a0)|, |V(a2)/V(a0)|, |V(a3)/V(a0)|] (0 for missing channels): the
        gains the probe measures, front end and source resistance included."""
        return physics.gains_of(self.phasors(freq_hz))

    def amplitude_v(self, level_dbfs: float) -> float:
        return self.board.peak_v_at_0dbfs * 10 ** (float(level_dbfs) / 20)

    def analog_levels(self, freq_hz: float | None, level_dbfs: float = -6.0
                      ) -> list[tuple[float, float]]:
        """(bias_v, peak_amplitude_v) for A0..A3 while playing this tone (no phases: the
        simavr harness takes amplitudes only)."""
        if freq_hz is None or freq_hz == 0:
            return physics.levels_of(self.board, None, 0.0)
        return physics.levels_of(self.board, self.phasors(freq_hz), self.amplitude_v(level_dbfs))

    def led_threshold_v(self, i: int) -> float:
        return self.board.led_threshold_v[i]

    def _measure_window(self, ms: int) -> Window:
        """One firmware MEASURE window starting at the command's execution time."""
        b = self.board
        t0 = self._exec_t
        period = 1.0 / b.rate_hz
        n = max(1, min(MAX_ROUNDS, math.ceil(ms * 1e-3 * b.rate_hz - 1e-9)))
        elapsed_us = round(n * period * 1e6)
        t0_ms = t0 * 1e3
        elapsed_ms = math.floor(t0_ms + elapsed_us / 1e3) - math.floor(t0_ms)
        self._exec_end = t0 + elapsed_us * 1e-6
        self.windows += 1
        phi = float(self._rng.uniform(0, 2 * math.pi))
        assert self.faults is not None
        muted = self.windows in self.faults.mutes        # fault mute@N: the card glitched
        tone = None if muted else self.tone_hz
        ph = self.phasors(tone) if tone else None
        analog, lit = physics.sample_window(b, ph, self.amplitude_v(self.level_dbfs),
                                            tone or 0.0, phi, t0, n, self._rng)
        analog = wiring.apply(self.faults.wiring, analog, b.bias_v, b.vref_v, b.adc_bits)
        return Window(analog, lit, elapsed_ms, elapsed_us, led_counts=True)

    # ------------------------------------------------------------------ link: device side
    def boot(self, at_s: float | None = None, *, hold_real_s: float = 0.0) -> None:
        """(Re)boot the board at ``at_s``: state lost, banner after ``boot_s``."""
        t = self.now_s if at_s is None else at_s
        banner = self.core.reset()
        self.boots += 1
        while self._out and self._out[-1].t > t:   # unsent output dies with the board
            self._out.pop()
        self._dev_tx_free = t
        self._booting_until = t + self.board.boot_s
        self._dev_free = self._booting_until
        self._send(banner, self._booting_until, hold_real_s=hold_real_s)

    def _send(self, data: bytes, t_start: float, hold_real_s: float = 0.0) -> None:
        data = self._byte_faults.apply(data)
        t = max(t_start, self._dev_tx_free)
        for i, b in enumerate(data):
            t += self.byte_s
            self._out.append(_Out(t, b, hold_real_s if i == 0 else 0.0))
        self._dev_tx_free = t

    def _device_byte(self, b: int, t_arr: float) -> None:
        if self.disconnected or self.dead or t_arr < self._booting_until:
            return                      # the bootloader swallows bytes while booting
        t = max(t_arr, self._dev_free)
        self._exec_t = self._exec_end = t
        line, before = self.core.pending.rstrip(b"\r"), self.core.lines
        reply = self.core.feed_byte(b)
        if self.core.lines == before:
            return
        self.commands += 1
        cfg = self.faults
        assert cfg is not None
        if self.commands in cfg.disconnects or self.commands in cfg.unplugs:
            self.disconnected = True
            self._out.clear()
            if self.commands in cfg.unplugs:
                self.replug_at = t + cfg.unplugs[self.commands]
            return
        action = cfg.replies.get(self.commands, "ok")
        if self.commands in cfg.resets or action == "dead":
            self.boot(t)
            self.dead = action == "dead"
            return
        if reply is None:
            return
        self.replies += 1
        start = self._exec_end
        delay = cfg.delays.get(self.replies, 0.0)
        for dt, data in render_reply(action, line, reply):    # ACTION@N (sims/faults.py)
            self._send(data, start + delay + dt, hold_real_s=delay if dt == 0 else 0.0)
        self._dev_free = start + delay

    # ------------------------------------------------------------------ link: host side
    def host_write(self, data: bytes) -> int:
        """The host sends bytes now; the board handles them as they arrive."""
        if self.disconnected:
            raise Disconnected("the simulated board was unplugged (fault disconnect@N)")
        self.charge_host()
        try:
            for b in self._byte_faults.apply(bytes(data)):
                t = max(self.now_s, self._host_tx_free) + self.byte_s
                self._host_tx_free = t
                self._device_byte(b, t)
        finally:
            self._host_resumes()
        return len(data)

    def in_waiting(self) -> int:
        """Bytes that have arrived at the host by ``now_s``."""
        n = 0
        for o in self._out:
            if o.t > self.now_s:
                break
            n += 1
        return n

    def next_output_s(self) -> float | None:
        return self._out[0].t if self._out else None

    def host_read(self, size: int = 1, timeout_s: float | None = None) -> bytes:
        """Read like a pyserial port with ``timeout``, advancing simulated time instead of
        waiting: up to ``size`` bytes, returning early when they have all arrived."""
        if self.disconnected:
            raise Disconnected("the simulated board was unplugged (fault disconnect@N)")
        if size <= 0:
            return b""
        self.charge_host()
        try:
            return self._host_read(size, timeout_s)
        finally:
            self._host_resumes()

    def _host_read(self, size: int, timeout_s: float | None) -> bytes:
        if timeout_s is None:
            deadline = math.inf
        else:
            deadline = self.now_s + max(0.0, float(timeout_s))
        if len(self._out) >= size and self._out[size - 1].t <= deadline:
            self.now_s = max(self.now_s, self._out[size - 1].t)
        elif math.isfinite(deadline):
            self.now_s = deadline
        elif self._out:
            self.now_s = max(self.now_s, self._out[-1].t)   # would block forever: give all
        out = bytearray()
        while self._out and len(out) < size and self._out[0].t <= self.now_s:
            out.append(self._out.popleft().b)
        return bytes(out)

    def pop_output(self, upto_s: float) -> list[_Out]:
        """Entries that have arrived by ``upto_s`` (pty server)."""
        got = []
        while self._out and self._out[0].t <= upto_s:
            got.append(self._out.popleft())
        return got

    def discard_input(self) -> None:
        """pyserial reset_input_buffer: drop what has arrived, keep what is on its way."""
        while self._out and self._out[0].t <= self.now_s:
            self._out.popleft()

    def advance(self, seconds: float) -> None:
        self.now_s += max(0.0, float(seconds))

    # ------------------------------------------------------------------ conveniences
    def transact(self, line: bytes, timeout_s: float = 10.0) -> list[bytes]:
        """Send one line, return every line received until the next reply (or timeout).

        Waits (in simulated time) for a boot in progress to finish first.
        """
        self.now_s = max(self.now_s, self._booting_until)
        self.host_write(line)
        lines: list[bytes] = []
        buf = bytearray()
        deadline = self.now_s + timeout_s
        while self.now_s < deadline:
            chunk = self.host_read(1, deadline - self.now_s)
            if not chunk:
                break
            buf += chunk
            if chunk == b"\n":
                lines.append(bytes(buf))
                buf.clear()
                if not lines[-1].startswith(b"!"):
                    break
        return lines

    def measure(self, ms: int = 200, cmd_id: int = 1) -> MeasureResult:
        """MEASURE through the device core, as a host would (advances ``now_s``)."""
        from hostctl.protocol import encode_command, parse_measure, parse_reply

        for line in self.transact(encode_command(cmd_id, "MEASURE", ms), ms / 1000 + 5):
            r = parse_reply(line)
            if r.id == cmd_id:
                return parse_measure(r)
        raise DeviceError("no MEASURE reply from the virtual bench")

    def state(self) -> dict[str, Any]:
        """A JSON-able summary (control socket ``{"get": "state"}``)."""
        b = self.board
        return {
            "board": b.name, "circuit": b.circuit, "seed": self.seed,
            "faults": str(self.faults), "sim_time_s": self.now_s,
            "waited_s": self.waited_s, "host_s": self.host_s,
            "tone_hz": self.tone_hz, "level_dbfs": self.level_dbfs,
            "true_values": self.true_values, "true_capacitances": self.true_capacitances,
            "nominal_values": b.resistors, "rate_hz": b.rate_hz, "adc_noise_lsb": b.noise_lsb,
            "led_threshold_v": list(b.led_threshold_v), "bias_v": b.bias_v,
            "peak_v_at_0dbfs": b.peak_v_at_0dbfs, "commands": self.commands,
            "replies": self.replies, "boots": self.boots, "windows": self.windows,
            "disconnected": self.disconnected, "byte_faults": dict(self._byte_faults.counts),
        }


def make_bench(board: str | Board = "notebook", seed: int = 0,
               faults: str | FaultConfig | None = None) -> VirtualBench:
    """A bench whose board has been simulated once: a netlist ngspice refuses is an
    InputError naming the file here, before any serial traffic."""
    b = board if isinstance(board, Board) else load_board(board)
    f = parse_faults(faults) if isinstance(faults, str) or faults is None else faults
    bench = VirtualBench(b, seed=seed, faults=f)
    bench.phasors(1000.0)
    return bench


def main(argv: list[str] | None = None) -> int:
    import argparse
    import sys

    ap = argparse.ArgumentParser(prog="python -m sims.bench",
                                 description="The virtual hostctl bench.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sp = sub.add_parser("serve", help="serve a simulated probe on a pseudo-terminal")
    sp.add_argument("--board", default="notebook",
                    help=f"board name ({', '.join(list_boards())}) or .toml path")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--faults", default=None, help="fault spec, see sims/faults.py")
    sp.add_argument("--listen", nargs="?", const="", default=None, metavar="DEVICE",
                    help="take the tone from an audio input (e.g. a null sink's monitor): "
                         "each MEASURE waits until the tone played during its window has "
                         "been heard; level = the recorded dBFS")
    sp.add_argument("--tone", type=float, default=None, help="initial tone (Hz)")
    sp.add_argument("--level", type=float, default=-6.0, help="initial level (dBFS)")
    sp.add_argument("--link", default=None, metavar="PATH",
                    help="also serve the port as this symlink (PTY names it); an unplug "
                         "removes it, as udev removes /dev/serial/by-id/... names")
    sb = sub.add_parser("boards", help="list the board files")
    del sb
    args = ap.parse_args(argv)
    if args.cmd == "boards":
        for name in list_boards():
            b = load_board(name)
            print(f"{name:12s} {b.circuit:20s} {b.description}")
        return 0
    try:
        bench = make_bench(args.board, args.seed, args.faults)
        if args.tone is not None:
            bench.set_tone(args.tone, args.level)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from sims.pty_server import serve

    return serve(bench, listen=args.listen or None, listen_given=args.listen is not None,
                 link=args.link)


if __name__ == "__main__":
    raise SystemExit(main())
