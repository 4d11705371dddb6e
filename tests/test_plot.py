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
    assert "run-both" in title and ("PASS" if run.passed else "FAIL") in title
    assert len(fig.axes) == 3 and all(ax.get_ylabel().endswith("(dB)") for ax in fig.axes)
    got = labels(fig)
    for want in ("measured", "fitted", "recommended build", "LED threshold", "target corner",
                 "target: LED on", "target: LED off", "LED on (measured)",
                 "LED off (measured)"):
        assert want in got, (want, got)
    measured = [ln for ln in fig.axes[0].get_lines() if ln.get_label() == "measured"][0]
    y = measured.get_ydata()
    assert max(y) < 3 and min(y) < -20         # dB, down the low-pass's skirt


def test_no_backend_switch_and_notebook_helper(run) -> None:
    from matplotlib import pyplot as plt

    from hostctl.measurements import MeasurementSet
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
