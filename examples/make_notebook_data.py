"""Write the course notebook's data set as hostctl CSVs (gain and LED), reproducibly.

1000 log-uniform tones over 1 Hz..1 MHz (``10**(6*u)``, numpy seed 0), channels low/band/high
of the notebook's ideal color organ (``color-organ-ideal``: no probe, no source resistance)
at the notebook values (C = 1 uF), float64. LED = |H| > 1/sqrt(2).

    python examples/make_notebook_data.py [OUT_DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from hostctl.circuits import LED_THRESHOLD, NOTEBOOK_VALUES, get_circuit
from hostctl.dataset import Measurement, MeasurementSet

SEED = 0
N_TONES = 1000


def tones(seed: int = SEED, n: int = N_TONES) -> np.ndarray:
    return 10.0 ** (6.0 * np.random.default_rng(seed).random(n))


def notebook_sets(circuit: str = "color-organ-ideal", seed: int = SEED, n: int = N_TONES
                  ) -> tuple[MeasurementSet, MeasurementSet]:
    """(gain set, LED set) for one preset at the notebook values, noise free."""
    circ = get_circuit(circuit)
    f = tones(seed, n)
    vals = {r: NOTEBOOK_VALUES[r] for r in circ.resistors}
    H = {k: v.numpy() for k, v in circ.response(f, vals, 1e-6).items()}
    meta = {"circuit": circuit, "capacitance": "1e-06", "source": "course notebook values",
            "seed": str(seed)}
    gain, led = MeasurementSet(meta=dict(meta)), MeasurementSet(meta=dict(meta))
    for i, fi in enumerate(f):
        for ch in circ.channels:
            h = float(H[ch][i])
            gain.append(Measurement(float(fi), ch, gain=h))
            led.append(Measurement(float(fi), ch, led=int(h > LED_THRESHOLD)))
    return gain, led


def main(argv: list[str]) -> None:
    out = Path(argv[0]) if argv else Path(__file__).resolve().parent
    gain, led = notebook_sets()
    for ms, name in ((gain, "notebook_gain.csv"), (led, "notebook_led.csv")):
        ms.write_csv(out / name)
        (out / name).chmod(0o644)  # atomic_write's temp file is private (0600)
    print(f"wrote {out / 'notebook_gain.csv'} and {out / 'notebook_led.csv'}")


if __name__ == "__main__":
    main(sys.argv[1:])
