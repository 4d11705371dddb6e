"""ngspice as the virtual bench's physics: complex node voltages of a netlist, per tone.

The bench must not compute its truth with hostctl's own transfer functions (the fit would
then be checked against itself), so every board's response comes from ``ngspice -b``.

How tones are served (chosen by measured cost): one dense AC sweep per board,
``ac dec 100`` from 0.01 Hz to 100 MHz (1001 points, one ngspice process of ~15 ms),
interpolated by a cubic spline of the complex voltages in log f. Against direct ngspice
points the spline is within ~4e-9 relative on the color organ (tests/test_spice_bench.py
checks <= 1e-7); 300 single-tone ``ac lin 1 f f`` analyses in one process cost ~0.3 s.
Tones outside the sweep are run directly, ``ac lin 1 f f`` each, in one process.

Parameters override the netlist's ``.param`` values (a later ``.param`` wins in ngspice):
the wrapper is the board's text (title commented out, ``.control`` blocks and ``.end``
dropped, ``.include`` paths made absolute) + the overrides + our own ``.control`` block.

Sweeps are cached in memory and on disk (``$HOSTCTL_SPICE_CACHE``, else
``$XDG_CACHE_HOME/hostctl/spice``, else ``~/.cache/hostctl/spice``), keyed by a hash of the
netlist text, every included file's text, the parameter values and the nodes. Files are
written to a temp name and renamed, so parallel processes never read half a file.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hostctl.errors import InputError

#: The dense sweep every board gets: lowest Hz, highest Hz, points per decade.
SWEEP = (0.01, 1e8, 100)
#: ngspice processes started by this process (tests count runs with it, not time).
RUNS = 0
MISSING_MESSAGE = ("ngspice not found (apt-get install ngspice): the virtual bench falls back "
                   "to hostctl's own solver, which is not an independent truth")
_INCLUDE = re.compile(r"^\s*\.inc(?:lude)?\s+(\"[^\"]+\"|'[^']+'|\S+)", re.IGNORECASE)
_MEMO: dict[str, AcResponse] = {}


class SpiceError(InputError):
    """ngspice refused a netlist (or is missing)."""


class NgspiceMissing(SpiceError):
    """``ngspice`` is not on PATH."""


def ngspice_path() -> str | None:
    return shutil.which("ngspice")


def cache_dir() -> Path:
    env = os.environ.get("HOSTCTL_SPICE_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "hostctl" / "spice"


@dataclass(frozen=True)
class Netlist:
    """A netlist's text and the folder its relative ``.include`` lines resolve against."""

    text: str
    base_dir: Path
    name: str            # for messages: the file, or "<netlist>"

    @classmethod
    def load(cls, source: str | os.PathLike | Netlist, base_dir: str | os.PathLike | None = None
             ) -> Netlist:
        """A path to a .cir file, or netlist text (a string with a newline)."""
        if isinstance(source, Netlist):
            return source
        if isinstance(source, str) and "\n" in source:
            return cls(source, Path(base_dir or os.getcwd()).resolve(), "<netlist>")
        path = Path(source)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise SpiceError(f"cannot read netlist: {e}", str(path)) from None
        return cls(text, path.resolve().parent, str(path))

    def body(self) -> str:
        """The text for a wrapper: title commented, includes absolute, no control/.end."""
        out: list[str] = []
        in_control = False
        for i, line in enumerate(self.text.splitlines()):
            s = line.strip().lower()
            if i == 0:
                out.append("* " + line)
                continue
            if s.startswith(".control"):
                in_control = True
            if in_control:
                in_control = not s.startswith(".endc")
                continue
            if s == ".end" or s.startswith(".end "):
                break
            m = _INCLUDE.match(line)
            if m:
                line = f".include {self._resolve(m.group(1))}"
            out.append(line)
        return "\n".join(out) + "\n"

    def _resolve(self, arg: str) -> Path:
        return (self.base_dir / arg.strip("\"'")).resolve()

    def digest_text(self) -> str:
        """The text plus every included file's text (what the response depends on)."""
        parts, seen = [self.body()], set()
        todo = [self]
        while todo:
            nl = todo.pop()
            for line in nl.text.splitlines():
                m = _INCLUDE.match(line)
                if not m:
                    continue
                p = nl._resolve(m.group(1))
                if p in seen:
                    continue
                seen.add(p)
                try:
                    inc = Netlist.load(p)
                except SpiceError:
                    raise SpiceError(f"cannot read included file {p}", self.name) from None
                parts.append(f"** {p}\n{inc.text}")
                todo.append(inc)
        return "\n".join(parts)


def _fmt(v: float) -> str:
    return repr(float(v))


def _wrapper(nl: Netlist, params: Mapping[str, float], nodes: Sequence[str],
             analyses: Iterable[str], out: str) -> str:
    lines = [f"* hostctl AC run of {nl.name}", nl.body()]
    if params:
        lines.append(".param " + " ".join(f"{k}={_fmt(v)}" for k, v in params.items()))
    vecs = " ".join(f"v({n})" for n in nodes)
    lines += [".control", "set wr_singlescale", "set wr_vecnames", "set appendwrite",
              "option numdgt=15"]
    for a in analyses:
        lines += [a, f"wrdata {out} {vecs}"]
    lines += ["quit", ".endc", ".end", ""]
    return "\n".join(lines)


def _run(nl: Netlist, params: Mapping[str, float], nodes: Sequence[str],
         analyses: list[str]) -> np.ndarray:
    """Rows of (f, re, im, re, im, ...) from one ngspice process."""
    global RUNS
    exe = ngspice_path()
    if exe is None:
        raise NgspiceMissing(MISSING_MESSAGE)
    with tempfile.TemporaryDirectory(prefix="hostctl-spice-") as tmp:
        cir, out = os.path.join(tmp, "run.cir"), os.path.join(tmp, "out.txt")
        Path(cir).write_text(_wrapper(nl, params, nodes, analyses, out), encoding="utf-8")
        RUNS += 1
        try:
            r = subprocess.run([exe, "-b", cir], capture_output=True, text=True,
                               timeout=120, cwd=tmp, check=False)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise SpiceError(f"ngspice failed to run: {e}", nl.name) from None
        errs = [ln.strip() for ln in (r.stderr + "\n" + r.stdout).splitlines()
                if ln.strip().lower().startswith("error")]
        if errs or r.returncode != 0 or not os.path.exists(out):
            why = errs[0] if errs else f"exit {r.returncode}, no output"
            raise SpiceError(f"ngspice: {why}", nl.name)
        rows = [ln.split() for ln in Path(out).read_text().splitlines()
                if ln.strip() and not ln.split()[0].startswith("freq")]
    data = np.array(rows, dtype=np.float64)
    if data.ndim != 2 or data.shape[1] != 1 + 2 * len(nodes):
        raise SpiceError(f"ngspice wrote {data.shape} numbers, expected "
                         f"{1 + 2 * len(nodes)} columns", nl.name)
    return data


@dataclass
class AcResponse:
    """A board's complex node voltages (per volt of ``Vs``'s AC 1) over the dense sweep."""

    netlist: Netlist
    params: dict[str, float]
    nodes: tuple[str, ...]
    freqs: np.ndarray                 # (n,) Hz
    values: np.ndarray                # (n, len(nodes)) complex

    def __post_init__(self) -> None:
        from scipy.interpolate import CubicSpline

        self._spline = CubicSpline(np.log(self.freqs), self.values, axis=0)

    def __call__(self, freqs_hz: float | Iterable[float]) -> dict[str, np.ndarray]:
        """Node voltages at ``freqs_hz``: node -> complex array (shape of the input)."""
        f = np.asarray(freqs_hz, dtype=np.float64)
        flat = f.reshape(-1)
        if not np.all(np.isfinite(flat) & (flat > 0)):
            raise SpiceError("frequencies must be positive numbers of Hz", self.netlist.name)
        out = np.empty((flat.size, len(self.nodes)), dtype=np.complex128)
        inside = (flat >= self.freqs[0]) & (flat <= self.freqs[-1])
        if inside.any():
            out[inside] = self._spline(np.log(flat[inside]))
        if (~inside).any():
            out[~inside] = direct(self.netlist, flat[~inside], self.params, self.nodes)
        return {n: out[:, i].reshape(f.shape) for i, n in enumerate(self.nodes)}


def direct(netlist: str | os.PathLike | Netlist, freqs_hz: Iterable[float],
           params: Mapping[str, float] | None = None, nodes: Sequence[str] = ("a0",)
           ) -> np.ndarray:
    """ngspice at exactly these tones (``ac lin 1 f f`` each, one process): (n, nodes)."""
    nl = Netlist.load(netlist)
    f = [float(x) for x in freqs_hz]
    if not f:
        return np.empty((0, len(nodes)), dtype=np.complex128)
    data = _run(nl, dict(params or {}), nodes, [f"ac lin 1 {_fmt(x)} {_fmt(x)}" for x in f])
    if len(data) != len(f):
        raise SpiceError(f"ngspice returned {len(data)} points for {len(f)} tones", nl.name)
    return data[:, 1::2] + 1j * data[:, 2::2]


def _key(nl: Netlist, params: Mapping[str, float], nodes: Sequence[str]) -> str:
    h = hashlib.sha256()
    h.update(nl.digest_text().encode())
    h.update(repr(sorted((k, float(v)) for k, v in params.items())).encode())
    h.update(repr((tuple(nodes), SWEEP)).encode())
    return h.hexdigest()[:32]


def _load_cached(path: Path, nodes: Sequence[str]) -> tuple[np.ndarray, np.ndarray] | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            if tuple(str(x) for x in z["nodes"]) != tuple(nodes):
                return None
            return np.array(z["freqs"]), np.array(z["values"])
    except (OSError, ValueError, KeyError):
        return None


def _store(path: Path, nodes: Sequence[str], freqs: np.ndarray, values: np.ndarray) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".npz")
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, nodes=np.array(nodes), freqs=freqs, values=values)
        os.replace(tmp, path)
    except OSError:
        pass        # a read-only cache only costs time


def ac_response(netlist: str | os.PathLike | Netlist, params: Mapping[str, float] | None = None,
                nodes: Sequence[str] = ("a0", "a1", "a2", "a3"), *,
                base_dir: str | os.PathLike | None = None) -> AcResponse:
    """The dense-sweep response of ``netlist`` with ``params`` (cached; see the docstring)."""
    nl = Netlist.load(netlist, base_dir)
    p = {k: float(v) for k, v in (params or {}).items()}
    nodes = tuple(nodes)
    key = _key(nl, p, nodes)
    hit = _MEMO.get(key)
    if hit is not None:
        return hit
    path = cache_dir() / f"{key}.npz"
    got = _load_cached(path, nodes)
    if got is None:
        lo, hi, per_dec = SWEEP
        data = _run(nl, p, nodes, [f"ac dec {per_dec} {_fmt(lo)} {_fmt(hi)}"])
        got = data[:, 0], data[:, 1::2] + 1j * data[:, 2::2]
        _store(path, nodes, *got)
    resp = AcResponse(nl, p, nodes, got[0], got[1])
    if len(_MEMO) > 256:
        _MEMO.clear()
    _MEMO[key] = resp
    return resp


def clear_memory_cache() -> None:
    _MEMO.clear()
