"""The virtual bench on a real pseudo-terminal, plus a control socket for the tone.

``python -m sims.bench serve`` runs :func:`serve`: any serial program can open the printed
``PTY`` path, and a host sets the tone through the ``CONTROL`` socket (JSON lines,
sims/control.py). Simulated time runs as fast as the traffic allows; only ``delay`` faults
(and the boot banner) are held back in real time, so a host's real timeout can fire.
"""

from __future__ import annotations

import math
import os
import select
import sys
import threading
import time
import tty
from typing import Any

from hostctl.errors import HostctlError, InputError
from sims.control import ServeLoop
from sims.faults import Disconnected

#: Real time a pty client gets after opening the port before the banner is written
#: (pyserial flushes the input right after opening; a banner sent earlier would be lost).
PTY_BOOT_HOLD_S = 0.1

#: --listen records at the null sink's rate where the device allows (no resampling, and
#: the whole band to 20 kHz well inside Nyquist), else at the device's default.
LISTEN_RATE = 48000


def _open_capture(capture_cls: Any, device: str | None) -> Any:
    try:
        return capture_cls(device, sample_rate=LISTEN_RATE)
    except HostctlError:
        return capture_cls(device)


def serve(bench: Any, *, listen: str | None = None, listen_given: bool = False,
          out: Any = None, link: str | None = None) -> int:
    """Serve the bench on a pseudo-terminal + control socket until SIGTERM/SIGINT.

    Prints ``PTY /dev/pts/N`` and ``CONTROL /path/control.sock`` (sims.control's serve loop,
    the one simavr's bench runs too). Opening the pty reboots the board (like a Uno's DTR
    reset): the banner follows ~0.1 s later. A client that closes and reopens the pty within
    a few ms may not be seen as a new open (no reboot).

    ``listen_given``: the tone comes from the audio input ``listen`` (None = the default
    input), heard by a recorder started before the PTY line is printed: each MEASURE is held,
    in real time, until one steady tone has been heard in the command's window
    (sims.listen.MeasureGate); its level is the recorded dBFS. Control-socket tones are
    overridden at the next MEASURE.

    ``link``: the port is also reachable as this symlink (like udev's
    ``/dev/serial/by-id/...``), and the link is what PTY names; an unplug removes it, so a
    host re-opening that name finds nothing, never another program's pty that took the
    freed number.
    """
    server = PtyServer(bench, link)
    loop: ServeLoop | None = None
    try:
        loop = ServeLoop(server)     # signals handled from here on: the finally runs
        if listen_given and not server.listen(listen):
            return 2
        bench.gains(1000.0)      # import torch now, not during the host's first MEASURE
        loop.announce(out)
        loop.run()
    finally:
        if loop is not None:
            loop.close()
        server.close()
    return 0


class PtyServer:
    """One bench behind a pty master: the :class:`sims.control.Served` of the virtual bench
    (the python device core; the serve loop around it is sims.control's)."""

    def __init__(self, bench: Any, link: str | None = None) -> None:
        self.bench = bench
        self.lock = threading.Lock()
        self.master, slave = os.openpty()
        tty.setraw(slave)
        self.port = os.ttyname(slave)
        os.close(slave)          # no slave fd of ours: POLLHUP on the master = no client
        self.link = link
        if link is not None:
            os.symlink(self.port, link)
            self.port = link
        os.set_blocking(self.master, False)
        self.gate: Any = None
        self.capture: Any = None
        self.master_open = True
        self.client_present = False
        self.hold_until: float | None = None
        self.wbuf = bytearray()

    # ------------------------------------------------------------------ the tone
    def listen(self, device: str | None) -> bool:
        """Take the tone from what a recorder hears during each MEASURE window (False:
        the recorder could not start, said why on stderr)."""
        try:
            from sims.listen import Capture, MeasureGate
        except ImportError as e:
            print(f"error: --listen needs sims/listen.py: {e}", file=sys.stderr)
            return False
        try:
            capture = _open_capture(Capture, device or None)
            waited = capture.start()
        except HostctlError as e:
            print(f"error: --listen: {e}", file=sys.stderr, flush=True)
            return False
        self.capture = capture
        print(f"listen: recording '{self.capture.name}' at {self.capture.rate} Hz "
              f"(capture started after {waited:.2f} s)", file=sys.stderr, flush=True)
        self.gate = MeasureGate(self.capture, self._heard_tone, self._gate_write, verbose=True)
        return True

    def _gate_write(self, data: bytes) -> None:
        try:
            self.bench.host_write(data)
        except Disconnected:
            pass

    def _heard_tone(self, freq_hz: float | None, level_dbfs: float) -> None:
        # A recorded tone is estimated to ~1e-6: one played at the sound card's limit
        # (or at 0 dBFS) may come out a hair above it; that is the limit, not beyond.
        top = self.bench.board.audio_max_hz
        if freq_hz is not None and top is not None and top < freq_hz <= top * (1 + 1e-4):
            freq_hz = float(top)
        self.bench.set_tone(freq_hz, min(level_dbfs, 0.0) if level_dbfs < 0.01 else level_dbfs)

    def control(self, req: Any) -> dict[str, Any]:
        """One control-socket request: ``{"tone_hz": F, "level_dbfs": L}`` or ``get=state``."""
        if not isinstance(req, dict):
            return {"ok": False, "error": "request must be a JSON object"}
        if req.get("get") == "state":
            with self.lock:
                return {"ok": True, **self.bench.state()}
        if "tone_hz" in req:
            try:
                with self.lock:
                    self.bench.set_tone(req["tone_hz"], float(req.get("level_dbfs", -6.0)))
            except (InputError, TypeError, ValueError) as e:
                return {"ok": False, "error": str(e)}
            return {"ok": True, "sim_time_s": self.bench.now_s}
        return {"ok": False, "error": "unknown request (want tone_hz or get=state)"}

    def _unlink(self) -> None:
        if self.link is not None:
            try:
                os.unlink(self.link)
            except FileNotFoundError:
                pass
            self.link = None

    # ------------------------------------------------------------------ the loop's hooks
    def alive(self) -> bool:
        return True              # an unplugged board still serves its control socket

    def step(self) -> int:
        """Follow the client, release output; ms until the next look."""
        if self.master_open and self.bench.disconnected:
            self._unlink()            # the name goes first: nothing to re-open under it
            os.close(self.master)     # the host's reads/writes now fail: "unplugged"
            self.master_open = False
        timeout_ms = 200
        if self.master_open:
            self._follow_client()
        if self.gate is not None:
            timeout_ms = min(timeout_ms, self._pump_gate())
        if self.master_open and self.client_present:
            timeout_ms = min(timeout_ms, self._release_output())
            self._write_out()
        elif self.master_open:
            timeout_ms = min(timeout_ms, 20)      # poll for a client opening the port
        return timeout_ms

    def fds(self) -> dict[int, int]:
        if self.master_open and self.client_present:
            return {self.master: select.POLLIN | (select.POLLOUT if self.wbuf else 0)}
        return {}

    def ready(self, fd: int, events: int) -> None:
        if events & select.POLLIN:
            self._from_host()

    def _follow_client(self) -> None:
        """A client opening the pty reboots the board (DTR); closing it drops the output."""
        ev = select.poll()
        ev.register(self.master, select.POLLIN)
        hup = any(e & (select.POLLHUP | select.POLLERR) for _, e in ev.poll(0))
        if hup and self.client_present:          # the host closed the port
            self.client_present = False
            self.wbuf.clear()
            with self.lock:
                self.bench.pop_output(math.inf)
        elif not hup and not self.client_present:   # opened: DTR resets the board
            self.client_present = True
            self.hold_until = None
            with self.lock:
                self.bench.pop_output(math.inf)
                self.bench.boot(hold_real_s=PTY_BOOT_HOLD_S)

    def _pump_gate(self) -> int:
        """MEASUREs whose audio has been heard go to the bench; ms until the next look."""
        if not self.client_present:
            self.gate.reset()
        elif self.master_open:
            with self.lock:
                again = self.gate.pump()
            if again is not None:
                return max(1, int(again * 1000))
        return 200

    def _release_output(self) -> int:
        """Simulated time jumps ahead except for real-time holds; ms until a hold ends."""
        bench = self.bench
        with self.lock:
            while bench._out:
                head = bench._out[0]
                if head.hold_real_s > 0:
                    if self.hold_until is None:
                        self.hold_until = time.monotonic() + head.hold_real_s
                    if time.monotonic() < self.hold_until:
                        return max(1, int((self.hold_until - time.monotonic()) * 1000) + 1)
                    head.hold_real_s = 0.0
                    self.hold_until = None
                bench.now_s = max(bench.now_s, head.t)
                self.wbuf.append(bench._out.popleft().b)
        return 200

    def _write_out(self) -> None:
        if not self.wbuf:
            return
        try:
            k = os.write(self.master, bytes(self.wbuf))
            del self.wbuf[:k]
        except BlockingIOError:
            pass
        except OSError:
            self.wbuf.clear()

    def _from_host(self) -> None:
        try:
            data = os.read(self.master, 4096)
        except (BlockingIOError, OSError):
            data = b""
        if data and self.gate is not None:
            self.gate.feed(data, time.monotonic())
        elif data:
            with self.lock:
                try:
                    self.bench.host_write(data)
                except Disconnected:
                    pass

    def close(self) -> None:
        """Report what --listen heard, stop the recorder, close the pty."""
        if self.capture is not None:
            self.capture.close()
        if self.gate is not None:
            waits = sorted(w for _, _, w in self.gate.heard)
            med = waits[len(waits) // 2] if waits else 0.0
            print(f"listen: {len(self.gate.heard)} MEASUREs heard (wait median {med:.3f} s, "
                  f"max {waits[-1] if waits else 0.0:.3f} s), {self.gate.fallbacks} without a "
                  f"steady tone, {self.capture.overflows if self.capture else 0} input "
                  "overflows", file=sys.stderr, flush=True)
        self._unlink()
        if self.master_open:
            os.close(self.master)
            self.master_open = False
