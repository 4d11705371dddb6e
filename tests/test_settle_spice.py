"""A queued tone's window opens SETTLE_S after its fade-in: enough on the board as built?

Playing tones back to back (hostctl.audio cue/wait) drops the 0.2 s of output latency a
tone used to wait before its window, so the filters and the probe's coupling network
(10 uF into 10 kohm: tau = 0.1 s) get only the fades and SETTLE_S to settle. ngspice's
transient analysis of sims/boards/bench.cir answers it, not our equations: the sound card's
voltage is the synthesiser's switch (raised-cosine fade-out, fade-in; a behavioural source),
the probe samples each input at its round rate, and each gain against A0 is compared with
the same window of a run where the new tone had always played.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from hostctl.audio import FADE_S, SETTLE_S
from hostctl.plan import window_ms
from sims import spice
from sims.boards import load_board

pytestmark = pytest.mark.slow

BOARD = Path(__file__).resolve().parent.parent / "sims" / "boards" / "bench.cir"
T_SWITCH = 1.0                      # the old tone's own start has long decayed (10 tau)


def transient(tmp: Path, old_hz: float, new_hz: float, steady: bool, until_s: float,
              peak_v: float) -> tuple[np.ndarray, list[np.ndarray]]:
    """v(a0..a3) over time with the sound card switching old -> new at T_SWITCH."""
    t, f = T_SWITCH, FADE_S
    fade_out = f"(u({t}-time)+u(time-{t})*u({t + f}-time)*0.5*(1+cos(pi*(time-{t})/{f})))"
    fade_in = (f"(u(time-{t + f})*u({t + 2 * f}-time)*0.5*(1-cos(pi*(time-{t + f})/{f}))"
               f"+u(time-{t + 2 * f}))")
    src = (f"{peak_v}*sin(2*pi*{new_hz}*time)" if steady else
           f"{peak_v}*({fade_out}*sin(2*pi*{old_hz}*time)+{fade_in}*sin(2*pi*{new_hz}*time))")
    step = min(20e-6, 1 / (40 * max(old_hz, new_hz)))
    out = tmp / ("steady.txt" if steady else "switch.txt")
    body = spice.Netlist.load(str(BOARD)).body().replace("Vs src 0 DC 0 AC 1",
                                                          f"Bs src 0 V={src}")
    deck = tmp / "deck.cir"
    deck.write_text(body + f".control\ntran {step:.3g} {until_s:.4f} 0 {step:.3g}\n"
                    f"wrdata {out} v(a0) v(a1) v(a2) v(a3)\nquit\n.endc\n.end\n")
    subprocess.run([spice.ngspice_path() or "ngspice", "-b", str(deck)], capture_output=True,
                   timeout=300)
    assert out.exists(), f"ngspice wrote no {out.name}"
    d = np.loadtxt(out)
    return d[:, 0], [d[:, 2 * k + 1] for k in range(4)]


def window_rms(t: np.ndarray, v: list[np.ndarray], start_s: float, ms: int,
               rate_hz: float) -> np.ndarray:
    """Each input's RMS (mean removed, as the firmware) over a window of round-robin samples."""
    n = int(ms / 1000 * rate_hz)
    return np.array([np.interp(start_s + np.arange(n) / rate_hz + k / (4 * rate_hz), t, v[k]
                               ).std() for k in range(4)])


@pytest.mark.parametrize("old_hz,new_hz", [(1000.0, 20.0), (20.0, 1000.0), (5000.0, 70.0),
                                           (1000.0, 35.0), (15000.0, 200.0)])
def test_a_window_settle_s_after_the_fade_reads_the_steady_gain(tmp_path, old_hz, new_hz):
    if spice.ngspice_path() is None:
        pytest.skip(spice.MISSING_MESSAGE)
    board = load_board("bench")
    rate = board.rate_hz
    ms = window_ms(new_hz, rate, 200)
    opens = T_SWITCH + 2 * FADE_S + SETTLE_S
    until = opens + ms / 1000 + 0.01
    peak = board.peak_v_at_0dbfs * 10 ** (-6 / 20)
    tq, vq = transient(tmp_path, old_hz, new_hz, False, until, peak)
    ts, vs = transient(tmp_path, old_hz, new_hz, True, until, peak)
    got = window_rms(tq, vq, opens, ms, rate)
    steady = window_rms(ts, vs, opens, ms, rate)
    err = (got[1:] / got[0]) / (steady[1:] / steady[0]) - 1
    print(f"{old_hz:g} -> {new_hz:g} Hz, {ms} ms window {SETTLE_S * 1000:.0f} ms after the "
          f"fade: gain errors {np.round(err * 100, 4)} %")
    # a tenth of a 200 ms window's own scatter on a gain (~0.1 %: hostctl/noise.py)
    assert np.all(np.abs(err) < 5e-4), err
    assert np.all(steady[1:] > 1e-3 * steady[0])     # every output carries a signal
