"""The SPICE-subset parser: values, continuations, subcircuits, includes, directives, and
one clear line (file:line) for each kind of bad input."""

from __future__ import annotations

import math

import pytest

from hostctl.circuits import CIRCUITS, PRESETS_DIR, get_circuit, load_netlist, parse_text
from hostctl.circuits.expr import parse_number
from hostctl.errors import InputError


@pytest.mark.parametrize("text, value", [
    ("1", 1.0), ("2.2k", 2200.0), ("10uF", 1e-5), ("1u", 1e-6), ("1meg", 1e6),
    ("1MEG", 1e6), ("3m", 3e-3), ("4.7n", 4.7e-9), ("22p", 22e-12), ("1f", 1e-15),
    ("1F", 1e-15), ("2g", 2e9), ("1t", 1e12), ("1mil", 25.4e-6), ("1e-6", 1e-6),
    ("1.5e3", 1500.0), ("-2k", -2000.0), ("10ohm", 10.0), ("5v", 5.0), (".5k", 500.0),
])
def test_suffixes(text, value):
    assert parse_number(text) == pytest.approx(value, rel=1e-15)


def _net(body: str, tmp_path=None, name="t.cir"):
    path = str(tmp_path / name) if tmp_path else name
    return parse_text("* title\n" + body, path)


def test_title_line_is_skipped_and_comments_go():
    net = parse_text("R1 a 0 1k\nR2 a 0 2k ; inline\nV1 a 0 AC 1 $ dollar comment\n"
                     "* full line\n", "t.cir")
    assert [e.name for e in net.elements] == ["r2", "v1"]
    assert net.elements[0].value == "2000.0"


def test_continuation_params_and_expressions():
    net = _net(".param Ra=1k\n+ Rb={2*Ra} rc = 3k\nR1 a 0 {Rb}\n"
               "R2 a b {Ra + rc}\nV1 b 0 dc 0 ac 2 45\n.end\nR9 x 0 1\n")
    assert net.params == {"Ra": 1000.0, "Rb": 2000.0, "rc": 3000.0}
    assert [e.name for e in net.elements] == ["r1", "r2", "v1"]   # nothing after .end
    assert net.param("RA") == "Ra" and net.param("nope") is None
    v = net.elements[2]
    assert v.kind == "V" and v.value == "2.0" and v.phase_deg == 45.0


def test_control_block_is_skipped():
    net = _net("R1 a 0 1k\n.control\nac dec 10 1 1k\nQ1 bogus\n.endc\nV1 a 0 AC 1\n")
    assert [e.kind for e in net.elements] == ["R", "V"]


def test_nested_subcircuits_flatten_with_renamed_nodes_and_params():
    net = _net(
        ".param Rg=100\n"
        ".subckt leaf p q params: r=1k\nR1 p mid {r}\nC1 mid q 1u\n.ends leaf\n"
        ".SUBCKT pair in out r2=5\nXa in m leaf r={2*r2}\nXb m out leaf\nRx m 0 {Rg}\n.ENDS\n"
        "Xtop a b pair r2={Rg}\nV1 a 0 AC 1\nR0 b 0 1\n")
    by = {e.name: e for e in net.elements}
    assert set(by) == {"xtop.xa.r1", "xtop.xa.c1", "xtop.xb.r1", "xtop.xb.c1", "xtop.rx",
                       "v1", "r0"}
    assert by["xtop.xa.r1"].nodes == ("a", "xtop.xa.mid")
    assert by["xtop.xa.c1"].nodes == ("xtop.xa.mid", "xtop.m")
    assert by["xtop.xb.c1"].nodes == ("xtop.xb.mid", "b")
    assert by["xtop.rx"].nodes == ("xtop.m", "0")
    # r = 2 * r2, r2 = Rg: the value stays a function of the global parameter
    from hostctl.circuits.expr import evaluate
    assert evaluate(by["xtop.xa.r1"].value, {"rg": 7.0}) == 14.0
    assert evaluate(by["xtop.xb.r1"].value, {}) == 1000.0


def test_include_is_relative_to_the_including_file(tmp_path):
    sub = tmp_path / "parts"
    sub.mkdir()
    (sub / "probe.cir").write_text("* probe\n.include more.cir\n.subckt p a b\n"
                                   "Rp a b {Rp}\n.ends\n")
    (sub / "more.cir").write_text(".param Rp=20k\n")
    top = tmp_path / "top.cir"
    top.write_text("* top\n*@ channels ref=in out=o\n*@ fit Rs\n.include parts/probe.cir\n"
                   ".param Rs=10\nV1 s 0 AC 1\nR1 s in {Rs}\nX1 in o p\nR2 o 0 1k\n")
    c = load_netlist(top)
    assert c.params["Rp"] == 20e3 and c.resistors == ("Rs",) and c.channels == ("out",)
    assert c.name == "top"


def test_directives_are_typed():
    c = get_circuit("color-organ")
    d = c.netlist.directives
    assert d.circuit == "color-organ" and d.family == "color-organ"
    assert d.channels == {"ref": "a0", "low": "a1", "band": "a2", "high": "a3"}
    assert d.leds == {"low": "low", "band": "band", "high": "high"}
    assert d.fit == ("R_low", "R_band_low", "R_band_high", "R_high")
    assert d.sections["R_band_high"] == ("band", "high")
    net = _net("*@ nuisance r_top 20k 5%\n*@ nuisance Cx 1u 100n\n*@ board-tolerance 5%\n"
               ".param R_top=20k Cx=1u\nR1 a 0 {R_top}\nC1 a 0 {Cx}\nV1 a 0 AC 1\n")
    n = net.directives.nuisance
    assert n["R_top"].nominal == 20e3 and n["R_top"].tolerance == pytest.approx(1e3)
    assert n["Cx"].relative == pytest.approx(0.1)
    assert net.directives.extra == (("board-tolerance", ("5%",)),)


def test_every_preset_is_registered_with_its_family():
    names = {p.stem for p in PRESETS_DIR.glob("*.cir")} - {"probe"}
    assert names <= set(CIRCUITS)
    fam = {n: c.family for n, c in CIRCUITS.items()}
    assert {n for n, f in fam.items() if f == "color-organ"} == {
        "color-organ", "color-organ-passive", "color-organ-ideal", "color-organ-passive-ideal"}
    assert {n for n, f in fam.items() if f == "bandpass"} == {
        "bandpass", "bandpass-unbuffered", "bandpass-ideal", "bandpass-unbuffered-ideal"}
    co = get_circuit("color-organ")
    assert co.params["R_source"] == 10.0 and co.params["C_couple"] == 10e-6
    assert co.params["R_low"] == pytest.approx(1 / (2 * math.pi * 800e-6), rel=1e-15)


BAD = [
    ("Q1 a b c model\n", "t.cir:2", "unknown element 'Q1'"),
    ("R1 a\n", "t.cir:2", "R1 needs 2 nodes"),
    ("R1 a 0\n", "t.cir:2", "missing value"),
    ("R1 a 0 {Rx}\nV1 a 0 AC 1\n", "t.cir:2", "undefined parameter 'rx'"),
    ("R1 a 0 R_low\n", "t.cir:2", "is not a number"),
    ("R1 a 0 1k 2k\n", "t.cir:2", "unexpected '2k'"),
    ("R1 a 0 {2*}\n", "t.cir:2", "cannot read"),
    ("X1 a b nothere\n", "t.cir:2", "unknown subcircuit 'nothere'"),
    (".subckt s a b\nR1 a b 1\n.ends\nX1 a s\n", "t.cir:5", "s has 2 nodes"),
    (".subckt s a b\nR1 a b 1\n", "t.cir:2", "has no .ends"),
    (".param a={b}\n.param b={a}\nR1 x 0 {a}\n", "t.cir:", "depends on itself"),
    (".param 1x=3\n", "t.cir:2", "is not NAME=VALUE"),
    ("+ 1k\n", "t.cir:2", "continuation"),
    (".tran 1u 1m\n.foo\nR1 a 0 1\n", "t.cir:3", "unsupported directive '.foo'"),
    (".include nothere.cir\n", "nothere.cir", "no such netlist file"),
    ("*@ channels ref=a0 low=zz\nR1 a0 0 1\n", "t.cir", "no node 'zz'"),
    ("*@ fit R_nope\nR1 a0 0 1\n", "t.cir", "'R_nope' is not a .param"),
    ("*@ section R1 low middle\nR1 a0 0 1\n", "t.cir:2", "RESISTOR CHANNEL low|high"),
    ("*@ nuisance R1 1k\nR1 a0 0 1\n", "t.cir:2", "NAME NOMINAL TOLERANCE"),
    ("R1 a 0 1\nR1 a 0 2\n", "t.cir:3", "defined twice"),
]


@pytest.mark.parametrize("body, where, what", BAD, ids=[b[2] for b in BAD])
def test_bad_input_names_file_line_and_what(body, where, what):
    with pytest.raises(InputError) as e:
        _net(body)
    msg = str(e.value)
    assert where in msg and what in msg and "\n" not in msg


def test_user_netlist_needs_channels_and_fit(tmp_path):
    p = tmp_path / "x.cir"
    p.write_text("* x\nV1 a 0 AC 1\nR1 a b 1k\nC1 b 0 1u\n")
    with pytest.raises(InputError, match=r"x.cir: needs '\*@ channels"):
        load_netlist(p)
    p.write_text("* x\n*@ channels ref=a out=b\n.param R=1k\nV1 a 0 AC 1\nR1 a b {R}\n"
                 "C1 b 0 1u\n")
    with pytest.raises(InputError, match=r"needs '\*@ fit"):
        load_netlist(p)


def test_floating_node_is_an_error_naming_it(tmp_path):
    p = tmp_path / "f.cir"
    p.write_text("* f\n*@ channels ref=a out=b\n*@ fit R\n.param R=1k\nV1 a 0 AC 1\n"
                 "R1 a b {R}\nC1 b 0 1u\nR2 x y 1k\nI1 0 x AC 1\n")
    with pytest.raises(InputError, match=r"f.cir: node\(s\) x, y float"):
        load_netlist(p)
