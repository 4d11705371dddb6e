"""Drive the real probe firmware under simavr (sims/simavr/harness.c) from Python.

`AvrBench` starts the harness on a firmware ELF, hands out the pseudo-terminal the
firmware's UART is bridged to (``port``, for hostctl's client) and plays tones into the
simulated board: the per-channel bias/amplitude and LED thresholds come from the same
board model as the pure-Python virtual bench (``sims.bench.VirtualBench``), so both
simulators describe one board and can be compared number for number.

It also quacks like the audio sink ``sims.tones.SimToneOutput`` expects (``set_tone``).

Time: the harness runs the AVR at roughly real speed, but everything that matters is in
*simulated* seconds (``sim_time_s()``); never assert on wall time.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from hostctl.errors import DeviceError, HostctlError
from sims.control import serve_loop

SIMAVR_DIR = Path(__file__).resolve().parent / "simavr"
REPO_DIR = SIMAVR_DIR.parent.parent
#: Where `make -C firmware uno` puts the probe firmware (override: HOSTCTL_FIRMWARE_ELF).
DEFAULT_ELF = REPO_DIR / "firmware" / "build" / "uno" / "hostctl_probe.elf"
#: Control replies normally come back within a millisecond; this only catches a hung harness.
CONTROL_TIMEOUT_S = 10.0
#: Headers the harness needs (Debian: libsimavr-dev).
SIMAVR_HEADER = Path("/usr/include/simavr/sim_avr.h")


class SimavrError(HostctlError):
    """The simavr harness could not be built, started, or answered nonsense."""


def simavr_available() -> str | None:
    """None if the harness can be built here, else the reason it cannot (for skips)."""
    if not SIMAVR_HEADER.exists():
        return f"simavr headers missing ({SIMAVR_HEADER}): apt-get install simavr libsimavr-dev"
    if shutil.which("make") is None or shutil.which(os.environ.get("CC", "cc")) is None:
        return "no make / C compiler on PATH"
    return None


def default_firmware_elf() -> Path:
    """The probe firmware ELF: $HOSTCTL_FIRMWARE_ELF or firmware/build/uno/hostctl_probe.elf."""
    env = os.environ.get("HOSTCTL_FIRMWARE_ELF")
    return Path(env) if env else DEFAULT_ELF


def _build_dir() -> Path:
    """In-tree build dir if writable (a checkout), else a per-user cache (an install)."""
    env = os.environ.get("HOSTCTL_SIMAVR_BUILD")
    if env:
        return Path(env)
    if os.access(SIMAVR_DIR, os.W_OK):
        return SIMAVR_DIR / "build"
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "hostctl" / "simavr"


def build_harness() -> Path:
    """`make -C sims/simavr` if the binary is missing or older than its source.

    A file lock keeps parallel test processes from racing the same build.
    """
    why = simavr_available()
    if why:
        raise SimavrError(f"cannot build the simavr harness: {why}")
    build = _build_dir()
    build.mkdir(parents=True, exist_ok=True)
    exe = build / "harness"
    sources = [SIMAVR_DIR / "harness.c", SIMAVR_DIR / "Makefile"]
    with open(build / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        newest = max(p.stat().st_mtime for p in sources)
        if exe.exists() and exe.stat().st_mtime >= newest:
            return exe
        r = subprocess.run(["make", "-s", "-C", str(SIMAVR_DIR), f"BUILD={build}"],
                           capture_output=True, text=True, check=False)
        if r.returncode != 0 or not exe.exists():
            tail = (r.stderr or r.stdout).strip().splitlines()[-5:]
            raise SimavrError("building the simavr harness failed: " + " | ".join(tail))
    return exe


class AvrBench:
    """The probe firmware running in simavr inside a simulated colour-organ board.

    ``board`` is a board name/path or a ready ``sims.bench.VirtualBench`` (its analog
    model gives the levels). ``hold=True`` keeps the MCU stopped until :meth:`go` - open
    the port first, or the boot banner is flushed away by pyserial's open(). With
    ``reset_on_open`` the harness behaves like a Uno instead: every open of the port
    resets the MCU, which starts 0.1 s (wall) later. ``noise`` feeds the board's ADC
    noise (``bench.adc_noise_lsb``) into every conversion.
    """

    def __init__(self, elf: str | os.PathLike[str] | None = None, *, board: Any = "notebook",
                 seed: int = 0, hold: bool = True, noise: bool = True,
                 reset_on_open: bool = False,
                 harness: str | os.PathLike[str] | None = None) -> None:
        self.elf = Path(elf) if elf is not None else default_firmware_elf()
        if not self.elf.is_file():
            raise SimavrError(f"firmware ELF not found: {self.elf} "
                              "(build it: make -C firmware uno)")
        self.bench = self._make_bench(board, seed)
        self.level_dbfs = -6.0
        self.freq_hz: float | None = None
        self.async_lines: list[str] = []
        self._buf = b""
        self._proc: subprocess.Popen[bytes] | None = None
        exe = Path(harness) if harness is not None else build_harness()
        self._log = tempfile.NamedTemporaryFile(prefix="hostctl-simavr-", suffix=".log",
                                                delete=False)
        self.log_path = Path(self._log.name)
        self.reset_on_open = bool(reset_on_open)
        argv = [str(exe)] + (["--reset-on-open"] if reset_on_open else []) + [str(self.elf)]
        self._proc = subprocess.Popen(argv, stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=self._log)
        try:
            first = self._read_line(CONTROL_TIMEOUT_S)
            if not first.startswith("PTY "):
                raise SimavrError(f"simavr harness did not start: {first!r} "
                                  f"({self._log_tail()})")
            self.port: str = first.split(None, 1)[1]
            self.running = False
            if self.bench is not None:
                self._send_thresholds()
                if noise:
                    self.command(f"NOISE {float(self.bench.adc_noise_lsb):.6f} {int(seed)}")
                self.set_tone(None)
            if not hold and not reset_on_open:
                self.go()
        except BaseException:
            self.close()
            raise

    # ----------------------------------------------------------------- plumbing
    @staticmethod
    def _make_bench(board: Any, seed: int) -> Any:
        if board is None:
            return None
        if hasattr(board, "analog_levels"):
            return board
        try:
            from sims.bench import VirtualBench, load_board
        except ImportError as e:  # pragma: no cover - depends on helper BENCH's module
            raise SimavrError(f"sims.bench (the board model) is not importable: {e}") from None
        return VirtualBench(load_board(board), seed=seed)

    def _read_line(self, timeout_s: float) -> str:
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        deadline = time.monotonic() + timeout_s
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise SimavrError(f"simavr harness silent for {timeout_s:.0f} s "
                                  f"(log: {self.log_path})")
            r, _, _ = select.select([fd], [], [], left)
            if not r:
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                code = self._proc.poll()
                raise SimavrError(f"simavr harness exited (code {code}); log: {self.log_path}: "
                                  + self._log_tail())
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line.decode("ascii", "replace").strip()

    def _log_tail(self) -> str:
        try:
            return " | ".join(self.log_path.read_text(errors="replace").strip().splitlines()[-3:])
        except OSError:
            return ""

    def command(self, line: str) -> str:
        """Send one control line; return its ``OK ...`` answer (async ``!`` lines are kept)."""
        if self._proc is None or self._proc.poll() is not None:
            raise SimavrError("simavr harness is not running")
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.write(line.encode("ascii") + b"\n")
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError) as e:
            raise SimavrError(f"simavr harness went away: {e}") from None
        while True:
            reply = self._read_line(CONTROL_TIMEOUT_S)
            if reply.startswith("!"):
                self.async_lines.append(reply)
                continue
            if reply.startswith("OK"):
                return reply
            raise SimavrError(f"simavr harness refused {line.split()[0]!r}: {reply}")

    # ------------------------------------------------------------------- public
    def go(self) -> None:
        """Release the MCU (it boots and prints its banner)."""
        self.command("GO")
        self.running = True

    def reset(self) -> None:
        """Reset the MCU, like the Uno's auto-reset when a port is opened."""
        self.command("RESET")

    def set_levels(self, freq_hz: float, levels_mv: list[tuple[float, float]]) -> None:
        """Raw tone: (bias_mv, peak_amp_mv) for A0..A3 at ``freq_hz``."""
        if len(levels_mv) != 4:
            raise ValueError("need (bias_mv, amp_mv) for 4 channels")
        args = " ".join(f"{b:.4f} {a:.4f}" for b, a in levels_mv)
        self.command(f"TONE {float(freq_hz):.6f} {args}")

    def set_led_thresholds_mv(self, thr: tuple[float, float, float]) -> None:
        self.command("LEDTHR " + " ".join(f"{t:.4f}" for t in thr))

    def _send_thresholds(self) -> None:
        self.set_led_thresholds_mv(tuple(1000.0 * float(self.bench.led_threshold_v(i))
                                         for i in range(3)))  # type: ignore[arg-type]

    def set_tone(self, freq_hz: float | None, level_dbfs: float = -6.0) -> None:
        """Play ``freq_hz`` at ``level_dbfs`` into the board (None = silence).

        Levels come from ``VirtualBench.analog_levels`` so simavr and the virtual bench
        see the same board; the virtual bench's own tone state is kept in step.
        """
        if self.bench is None:
            raise SimavrError("no board model: use set_levels()")
        freq = None if freq_hz is None or freq_hz == 0 else float(freq_hz)
        # the board model validates (positive, <= 0 dBFS, within its sound card's range)
        if hasattr(self.bench, "set_tone"):
            self.bench.set_tone(freq, float(level_dbfs))
        self.freq_hz, self.level_dbfs = freq, float(level_dbfs)
        if freq is None:
            self.set_levels(0.0, self._silence_levels())
            return
        lv = self.bench.analog_levels(freq, self.level_dbfs)
        self.set_levels(self.freq_hz, [(1000.0 * b, 1000.0 * a) for b, a in lv])

    def _silence_levels(self) -> list[tuple[float, float]]:
        try:
            lv = self.bench.analog_levels(None, self.level_dbfs)
            return [(1000.0 * b, 0.0) for b, _ in lv]
        except Exception:  # noqa: BLE001 - models that reject None: biases at any tone
            lv = self.bench.analog_levels(1000.0, self.level_dbfs)
            return [(1000.0 * b, 0.0) for b, _ in lv]

    # ToneOutput-style aliases (hostctl.audio) for code that drives a sink directly.
    def tone(self, freq_hz: float, level_dbfs: float = -6.0) -> None:
        self.set_tone(freq_hz, level_dbfs)

    def silence(self) -> None:
        self.set_tone(None)

    def sim_time_s(self) -> float:
        """Simulated seconds since the harness started."""
        return float(self.command("TIME?").split()[2])

    def events(self) -> dict[str, Any]:
        """Counters at one instant ``t`` (sim s): ADC conversions per channel, LED edges,
        UART bytes each way."""
        out: dict[str, Any] = {}
        for tok in self.command("EVENTS?").split()[2:]:
            k, v = tok.split("=", 1)
            if k == "t":
                out[k] = float(v)
                continue
            nums = [int(x) for x in v.split(",")]
            out[k] = nums if len(nums) > 1 else nums[0]
        return out

    def open_serial(self, **kw: Any) -> Any:
        """Open the pty with pyserial, then release the MCU, so the banner is not lost."""
        import serial

        kw.setdefault("baudrate", 115200)
        kw.setdefault("timeout", 0.02)
        try:
            ser = serial.Serial(self.port, **kw)
        except (serial.SerialException, OSError) as e:
            raise DeviceError(f"cannot open simavr pty {self.port}: {e}") from None
        if not self.running and not self.reset_on_open:
            self.go()
        return ser

    def open_probe(self, **kw: Any) -> Any:
        """A hostctl ``Probe`` on this simulated board (handshake done, banner seen)."""
        from hostctl.device import Probe

        ser = self.open_serial(timeout=0.02, write_timeout=2.0)
        return Probe(self.port, serial_obj=ser, **kw)

    def close(self) -> None:
        """Stop the harness (QUIT, then SIGTERM, then SIGKILL) and drop its log."""
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                try:
                    assert proc.stdin is not None
                    proc.stdin.write(b"QUIT\n")
                    proc.stdin.flush()
                except (BrokenPipeError, OSError):
                    pass
                try:
                    proc.wait(timeout=2.0)
                except subprocess.TimeoutExpired:
                    proc.terminate()
                    try:
                        proc.wait(timeout=2.0)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
            for f in (proc.stdin, proc.stdout):
                if f is not None:
                    with contextlib.suppress(OSError):
                        f.close()
        log = getattr(self, "_log", None)
        if log is not None:
            with contextlib.suppress(OSError):
                log.close()
            if os.environ.get("HOSTCTL_KEEP_SIMAVR_LOG") is None:
                with contextlib.suppress(OSError):
                    self.log_path.unlink()
            self._log = None

    def __enter__(self) -> AvrBench:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __del__(self) -> None:  # a forgotten bench must not leave a simulator spinning
        with contextlib.suppress(Exception):
            self.close()

    def drain(self) -> list[str]:
        """Collect pending unsolicited ``!`` lines without blocking (keeps the pipe empty)."""
        if self._proc is None or self._proc.stdout is None:
            return []
        fd = self._proc.stdout.fileno()
        while select.select([fd], [], [], 0)[0]:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            self._buf += chunk
        got = []
        while b"\n" in self._buf:
            line, self._buf = self._buf.split(b"\n", 1)
            got.append(line.decode("ascii", "replace").strip())
        self.async_lines = (self.async_lines + got)[-100:]
        return got

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None


# ------------------------------------------------------------------------------ pty server
class AvrServed:
    """The firmware's UART pty as a :class:`sims.control.Served`: the serve loop is the one
    the virtual bench runs (sims.control), only the bench behind the pty differs.

    The control socket speaks the virtual bench's JSON lines (``{"tone_hz": f,
    "level_dbfs": l}`` / ``{"tone_hz": null}`` / ``{"get": "state"}``), so a
    ``sim:/path.sock`` tone output drives the simavr board unchanged.
    """

    def __init__(self, sim: AvrBench) -> None:
        self.sim = sim
        self.port = sim.port

    def control(self, req: Any) -> dict[str, Any]:
        sim = self.sim
        if not isinstance(req, dict):
            return {"ok": False, "error": "request must be a JSON object"}
        if req.get("get") == "state":
            st: dict[str, Any] = {"ok": True, "simulator": "simavr", "elf": str(sim.elf),
                                  "tone_hz": sim.freq_hz, "level_dbfs": sim.level_dbfs,
                                  "sim_time_s": sim.sim_time_s(), "events": sim.events()}
            with contextlib.suppress(Exception):
                st["board"] = sim.bench.state()
            return st
        if "tone_hz" in req:
            try:
                sim.set_tone(req["tone_hz"], float(req.get("level_dbfs", -6.0)))
            except (HostctlError, TypeError, ValueError) as e:
                return {"ok": False, "error": str(e)}
            return {"ok": True, "sim_time_s": sim.sim_time_s()}
        return {"ok": False, "error": "unknown request (want tone_hz or get=state)"}

    def step(self) -> int:
        return 200               # the harness runs by itself; the loop only answers

    def fds(self) -> dict[int, int]:
        out = self.sim._proc.stdout if self.sim._proc is not None else None
        return {} if out is None else {out.fileno(): select.POLLIN}

    def ready(self, fd: int, events: int) -> None:
        self.sim.drain()         # the harness's unsolicited lines: keep its pipe empty

    def alive(self) -> bool:
        return self.sim.alive()


def serve(sim: AvrBench, *, out: Any = None) -> int:
    """Serve like ``python -m sims.bench serve``: PTY + CONTROL lines, then until SIGTERM
    (0), or until the harness exits (1). Opening the pty resets the MCU (Uno DTR
    behaviour), the banner follows."""
    return serve_loop(AvrServed(sim), out=out, prefix="hostctl-simavr-")


def main(argv: list[str] | None = None) -> int:
    """``python -m sims.avr serve [--board B] [--seed N] [--elf PATH]``."""
    import argparse
    import sys

    ap = argparse.ArgumentParser(prog="python -m sims.avr",
                                 description="the probe firmware in simavr on a simulated board")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sp = sub.add_parser("serve", help="pty + control socket, like `python -m sims.bench serve`")
    sp.add_argument("--board", default="notebook", help="board name or TOML path")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--elf", default=None, help=f"firmware ELF (default {DEFAULT_ELF})")
    sp.add_argument("--no-noise", action="store_true", help="no ADC noise")
    args = ap.parse_args(argv)
    try:
        with AvrBench(args.elf, board=args.board, seed=args.seed, noise=not args.no_noise,
                      reset_on_open=True) as sim:
            return serve(sim)
    except HostctlError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
