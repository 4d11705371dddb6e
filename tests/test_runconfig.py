"""The run's configuration types: a frozen RunConfig, one SessionHeader read and written in
one place (the text is the session schema), the LED rule as one tagged union, and the probe
inputs a circuit's netlist names."""

from __future__ import annotations

import dataclasses

import pytest

from hostctl import ledrule
from hostctl.circuits import LED_THRESHOLD
from hostctl.circuits.directives import probe_inputs
from hostctl.errors import InputError
from hostctl.runconfig import RunConfig, SessionHeader, with_board

#: the header lines of a session recorded by `hostctl calibrate --sim --mode both
#: --max-tones 14 --window-ms 50` at 4795365 (before these types), with --led-vf per LED
HEADER = """\
# started: 2026-12-02T14:42:04+00:00
# port: sim://?board=notebook&seed=0
# firmware: hostctl-probe/1.0.0
# protocol: 1
# probe_identity: fw=hostctl-probe/1.0.0,board=uno,mcu=atmega328p,sim=notebook/seed=0
# circuit: color-organ-ideal
# mode: both
# capacitance: R_low=1e-06,R_band_low=1e-06,R_band_high=1e-06,R_high=1e-06
# installed: R_low=198.94367886486918,R_band_low=39.78873577297384,\
R_band_high=159.15494309189535,R_high=31.830988618379067
# level_dbfs: -6.0
# window_ms: 50
# precision: 0.01
# max_tones: 14
# series: E24
# target: notebook default
# target_spec: {"source":"notebook default","corners_hz":{"low":[800.0],"band":[1000.0,\
4000.0],"high":[5000.0]},"bands_hz":{"low":{"on":[[20.0,700.0]],"off":[[920.0,20000.0]]},\
"band":{"on":[[1250.0,3200.0]],"off":[[20.0,900.0],[4500.0,20000.0]]},"high":{"on":\
[[5700.0,20000.0]],"off":[[20.0,4400.0]]}}}
# led_threshold:~
# led_vf: low=1.8,band=2.0,high=2.9
# audio_device:~
# audio_rate:~
# settle_s: 0.05
""".replace(":~", ": ")   # an empty value is written as 'key: ' (trailing space)
NOTES = """\
# floor_rms: 0.0000,0.0000,0.0000,0.0000
# floor_mean: 512.0000,512.0000,512.0000,512.0000
# level_dbfs_used: -6.0
# ref_rms: 72.486
# rate_hz: 5751
# n_samples: 288
"""


def _meta(text: str) -> dict[str, str]:
    return {k.strip(): v.strip() for k, _, v in
            (ln.lstrip("#").partition(":") for ln in text.splitlines())}


def _lines(meta: dict[str, str]) -> str:
    return "".join(f"# {k}: {v}\n" for k, v in meta.items())


def test_session_header_reads_and_writes_the_same_text() -> None:
    head = SessionHeader.from_meta(_meta(HEADER + NOTES))
    assert _lines(head.to_meta()) == HEADER
    assert _lines(head.notes()) == NOTES
    assert head.level == -6.0 and head.n_samples == 288 and head.rate_hz == 5751.0
    assert head.config.led_rule == ledrule.FromVf({"low": 1.8, "band": 2.0, "high": 2.9})
    assert head.config.bench is not None and head.config.bench.settle_s == 0.05
    assert head.config.bench.audio_device is None and head.config.bench.audio_rate is None


def test_bad_note_is_one_line_naming_the_file() -> None:
    meta = _meta(HEADER + NOTES.replace("0.0000,0.0000,0.0000,0.0000", "0,x"))
    with pytest.raises(InputError, match=r"^S\.csv: bad run note"):
        SessionHeader.from_meta(meta, "S.csv")


def test_run_config_is_frozen_and_checked_as_made() -> None:
    cfg = RunConfig(mode="led")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.mode = "gain"  # type: ignore[misc]
    with pytest.raises(InputError, match="window 5 ms"):
        RunConfig(window_ms=5)
    with pytest.raises(InputError, match="unknown mode"):
        dataclasses.replace(cfg, mode="sideways")


def test_board_defaults_flow_in_through_one_function() -> None:
    board = dataclasses.make_dataclass("Board", ["circuit", "resistors", "capacitance_f"])(
        "lowpass", {"R_low": 200.0, "R_high": 33.0}, {"R_low": 2.2e-6, "R_high": 1e-6})
    mine = with_board(RunConfig(), board, circuit_given=False, capacitance_given=False)
    assert (mine.circuit, dict(mine.installed), mine.capacitance) == (
        "lowpass", {"R_low": 200.0}, {"R_low": 2.2e-6})
    given = RunConfig(circuit="color-organ", installed={"R_low": 220.0}, capacitance=1e-6)
    kept = with_board(given, board, circuit_given=True, capacitance_given=True)
    assert kept == given


@pytest.mark.parametrize("text,rule", [
    ("0.5", ledrule.Fixed(0.5)),
    ("low=0.4,band=0.5,high=0.6", ledrule.Fixed({"low": 0.4, "band": 0.5, "high": 0.6})),
    ("estimate", ledrule.EstimateShared()),
    (" Estimate-Each ", ledrule.EstimatePerLed()),
])
def test_led_rule_from_text(text: str, rule: ledrule.LedRule) -> None:
    assert ledrule.parse(text) == rule


def test_led_rule_bad_text_names_the_option() -> None:
    with pytest.raises(InputError, match="'loud' is not a number, 'estimate' or"):
        ledrule.parse("loud")
    with pytest.raises(InputError, match="must be a positive number, got -1"):
        ledrule.parse("-1")


def test_led_rule_old_forms_convert_once_and_back() -> None:
    from hostctl.fit import SwitchVoltage

    assert ledrule.as_rule(0.3) == ledrule.Fixed(0.3)
    assert ledrule.as_rule("estimate-each") == ledrule.EstimatePerLed()
    assert ledrule.as_rule(SwitchVoltage("estimate")) == ledrule.EstimateShared(on_volts=True)
    assert ledrule.as_rule(SwitchVoltage({"low": 1.8})) == ledrule.FromVf({"low": 1.8})
    for old in (0.3, {"low": 0.4}, "estimate", "estimate-each", SwitchVoltage("estimate"),
                SwitchVoltage(2.0)):
        assert ledrule.engine_form(ledrule.as_rule(old)) == old


@pytest.mark.parametrize("thr,vf,mode,rule", [
    (0.5, None, "led", ledrule.Fixed(0.5)),
    (None, 2.0, "both", ledrule.FromVf(2.0)),
    (None, None, "gain", ledrule.Fixed(LED_THRESHOLD, given=False)),
    (None, None, "both", ledrule.EstimatePerLed()),
    (None, None, "led", ledrule.EstimateShared()),
])
def test_a_runs_rule(thr, vf, mode, rule) -> None:
    assert RunConfig(mode=mode, led_threshold=thr, led_vf=vf).led_rule == rule


def test_probe_inputs_from_the_netlist() -> None:
    from hostctl.circuits import get_circuit

    organ = get_circuit("color-organ")
    assert probe_inputs(organ.channels, organ.probe) == {"low": 1, "band": 2, "high": 3}
    # the probe's own node names the input; an ideal preset is wired as the color organ
    assert probe_inputs(("band",), {"ref": "a0", "band": "a2"}) == {"band": 2}
    assert probe_inputs(("high",), {"ref": "in", "high": "high"}) == {"high": 3}
    assert probe_inputs(("x", "y"), {"x": "a3", "y": "out"}) == {"y": 1, "x": 3}
    with pytest.raises(ValueError, match="only 3"):
        probe_inputs(("a", "b", "c", "d"), {})
