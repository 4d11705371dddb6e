"""bode.png and plot_fit: dB, a title with the run id and verdict, a legend for the target
corners and bands, the measured LED states; the user's matplotlib backend untouched."""

from __future__ import annotations

from pathlib import Path

import pytest

matplotlib = pytest.importorskip("matplotlib", reason="the plot extra is not installed")

from hostctl.cli import invoke  # noqa: E402

ROOT = Path(__file__).parent.parent


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from hostctl.commands.report import load_run

    out = tmp_path_factory.mktemp("plot") / "run-both"
    # the buffered board: the color-organ model is its circuit, so the fit is trusted and
    # the recommended build is drawn
    code, err, _ = invoke(["-q", "calibrate", "--sim", "bench-buffered", "--seed", "2",
                           "--mode", "both",
                           "--max-tones", "24", "--out", str(out)])
    assert code in (0, 1), err
    assert (out / "bode.png").stat().st_size > 10_000
    return load_run(out)


def labels(fig) -> list[str]:
    leg = fig.axes[0].get_legend()
    return [t.get_text() for t in leg.get_texts()]


def test_run_figure_says_what_it_is(run) -> None:
    from hostctl.plot import bode_figure

    fig = bode_figure(run)
    title = fig._suptitle.get_text()
    assert "run-both" in title and run.advice.verdict in title
    assert len(fig.axes) == 3 and all(ax.get_ylabel().endswith("(dB)") for ax in fig.axes)
    got = labels(fig)
    for want in ("measured", "fitted", "recommended build", "target corner",
                 "target: LED on", "target: LED off", "LED on (measured)",
                 "LED off (measured)"):
        assert want in got, (want, got)
    # flat on |H|, or V_f over the measured reference when the LEDs are judged on volts
    assert any(g.startswith("LED threshold") for g in got), got
    measured = [ln for ln in fig.axes[0].get_lines() if ln.get_label() == "measured"][0]
    y = measured.get_ydata()
    assert max(y) < 3 and min(y) < -20         # dB, down the low-pass's skirt


def test_no_backend_switch_and_notebook_helper(run) -> None:
    from matplotlib import pyplot as plt

    from hostctl.dataset import MeasurementSet
    from hostctl.plot import plot_fit, save_bode

    before = matplotlib.get_backend()
    matplotlib.use("pdf")
    try:
        save_bode(run, Path(run.session).parent / "again.png")
        data = MeasurementSet.read_csv(ROOT / "examples/notebook_gain.csv")
        fig = plot_fit(run.fit, data, target=run.config.target)
        assert matplotlib.get_backend() == "pdf"
        assert len(fig.axes) == 3 and "target corner" in labels(fig)
        plt.close(fig)
    finally:
        matplotlib.use(before)
    assert (Path(run.session).parent / "again.png").stat().st_size > 10_000


def test_leds_on_volts_draw_the_threshold_the_reference_sets() -> None:
    """LEDs judged on volts light where |H| * vin > V_f: the panel's threshold is V_f / vin
    at each tone (rising as the reference sags), and each measured state sits at its own
    row's V_f / vin -- not a flat |H| line."""
    import math

    import numpy as np
    from matplotlib.figure import Figure

    from hostctl.dataset import Measurement, MeasurementSet
    from hostctl.fit import FitResult
    from hostctl.plot import draw

    vals = {"R_low": 200.0, "R_band_low": 39.0, "R_band_high": 160.0, "R_high": 33.0}
    fit = FitResult("color-organ", dict(vals), {k: (v, v) for k, v in vals.items()},
                    {k: 1000.0 for k in vals}, {k: 1e-6 for k in vals}, True, 1, 0.0,
                    "led-interval", "auto", None, False, [], 0, 6, led_vf={
                        "low": 0.3, "band": 0.3, "high": 0.25})
    f = [100.0, 1000.0, 10000.0]
    vin = [0.5, 0.4, 0.2]     # a sagging reference
    rows = [Measurement(x, c, led=int(c == "high" and x > 5000), vin_v=v, level_dbfs=-6.0)
            for x, v in zip(f, vin, strict=True) for c in ("low", "band", "high")]
    fig = draw(Figure(), fit, MeasurementSet(rows), threshold=0.6)
    high = fig.axes[2]
    (line,) = [ln for ln in high.get_lines() if ln.get_label().startswith("LED threshold")]
    fx, fy = line.get_xdata(), line.get_ydata()
    for x, v in zip(f, vin, strict=True):
        i = int(np.argmin(np.abs(np.log(fx / x))))
        want = 20 * math.log10(0.25 / v)
        assert abs(fy[i] - want) < 0.05, (x, fy[i], want)   # tones on the 400-point grid
    (on,) = [ln for ln in high.get_lines() if ln.get_label() == "LED on (measured)"]
    assert on.get_ydata()[0] == pytest.approx(20 * math.log10(0.25 / 0.2) + 1.5)
    (off,) = [ln for ln in high.get_lines() if ln.get_label() == "LED off (measured)"]
    assert list(off.get_ydata()) == pytest.approx(
        [20 * math.log10(0.25 / v) - 1.5 for v in vin[:2]])
