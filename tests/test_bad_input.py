"""Bad input everywhere: one clear line, the right exit code, nothing half-written.

Exit codes: 2 for anything the user typed or a file they gave (InputError, bad sim://
board or fault spec), 3 for a probe that is missing / not a probe / fails (DeviceError),
4 for a sound card problem (AudioError). Property-based tests (hypothesis) throw random
documents at the target TOML reader and random edits of a board TOML at the board loader:
they must return a sane object or raise a HostctlError, nothing else.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import re
import tomllib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hostctl.cli import main
from hostctl.errors import HostctlError, InputError
from hostctl.target import load_target, parse_target
from sims.bench import BOARDS_DIR, load_board, make_bench

SIM = ["--port", "sim://?board=notebook&seed=0"]


def cli(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    code = 0
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            main(argv)
        except SystemExit as e:
            code = int(e.code or 0)
    return code, err.getvalue()


def one_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert re.match(r"hostctl( calibrate)?: error: ", lines[0]), lines[0]
    return lines[0]


# ------------------------------------------------------------------ TOML writer for tests
def _tv(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ", ".join(_tv(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(k, ensure_ascii=False)} = {_tv(x)}"
                               for k, x in v.items()) + "}"
    raise TypeError(v)


def dump_toml(d: dict) -> str:
    key = lambda k: json.dumps(k, ensure_ascii=False)  # noqa: E731
    out = [f"{key(k)} = {_tv(v)}" for k, v in d.items() if not isinstance(v, dict)]
    for k, v in d.items():
        if isinstance(v, dict):
            out.append(f"[{key(k)}]")
            out += [f"{key(kk)} = {_tv(vv)}" for kk, vv in v.items()]
    return "\n".join(out) + "\n"


scalar = st.one_of(st.integers(-2**63, 2**63 - 1), st.floats(), st.booleans(),
                   st.text(max_size=4))
value = st.recursive(scalar, lambda c: st.one_of(st.lists(c, max_size=3),
                                                 st.dictionaries(st.text(max_size=5), c,
                                                                 max_size=3)),
                     max_leaves=6)


# ------------------------------------------------------------------ target TOML
tkeys = st.sampled_from(["corners", "bands", "low", "band", "high", "on", "off", "x"])
target_doc = st.dictionaries(tkeys, st.one_of(value, st.dictionaries(tkeys, value, max_size=4)),
                             max_size=3)


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(target_doc)
def test_target_reader_never_crashes(doc: dict) -> None:
    try:
        t = parse_target(doc, "t.toml")
    except HostctlError as e:
        assert str(e).startswith("t.toml")          # names where it is wrong
        return
    for cs in t.corners.values():
        assert all(math.isfinite(c) and c > 0 for c in cs)
    for d in t.bands.values():
        for bands in d.values():
            assert all(0 < lo < hi for lo, hi in bands)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.binary(max_size=200))
def test_target_file_of_random_bytes(tmp_path_factory, data: bytes) -> None:
    p = tmp_path_factory.mktemp("t") / "t.toml"
    p.write_bytes(data)
    try:
        load_target(str(p))
    except InputError as e:
        assert str(p) in str(e)


@pytest.mark.parametrize("text,words", [
    ("[corners]\nlow = 800\nlow = 900\n", "not valid TOML"),          # duplicated key
    ("[corners]\nlow = nan\n", "finite"),
    ("[corners]\nlow = -800\n", "1 Hz..100 kHz"),
    ("[corners]\nlow = 2e6\n", "1 Hz..100 kHz, got 2e+06"),
    ("[corners]\nlow = 1e-9\n", "1 Hz..100 kHz"),
    ("[corners]\nlow = 30000\n", "outside the 20..20000 Hz the test tones can reach"),
    ("[corners]\nlow = 800\nmid = 2000\nband = [1000, 4000]\nhigh = 5000\n",
     "'mid' is not a channel of color-organ-ideal (known: low, band, high)"),
    ("[corners]\nlow = 800\nband = [1000, 4000]\nhigh = 5000\n[bands.mid]\non = [[20, 700]]\n",
     "bands.mid"),
    ("[corners]\nlow = 800\nhigh = 5000\n", "no corner for channel 'band'"),
    ("[corners]\nband = [4000, 1000]\n", "below"),
    ("corners = 5\n", "table"),
    ("[bands.low]\non = [[700, 20]]\n", "below"),
    ("[corners]\nlow = '800'\n", "number"),
])
def test_target_bad_files_via_cli(tmp_path: Path, text: str, words: str) -> None:
    p = tmp_path / "t.toml"
    p.write_text(text)
    out = tmp_path / "run"
    code, err = cli(["calibrate", "--target", str(p), "--out", str(out), *SIM])
    assert code == 2
    assert words in one_line(err)
    assert not out.exists()


# ------------------------------------------------------------------ board TOML
BASE_BOARD = tomllib.loads((BOARDS_DIR / "notebook.toml").read_text())
PATHS = ([(None, k) for k, v in BASE_BOARD.items() if not isinstance(v, dict)]
         + [(t, k) for t, v in BASE_BOARD.items() if isinstance(v, dict) for k in v]
         + [(None, "capacitance_f"), ("audio", "max_hz"), ("led", "threshold_v"),
            (None, "extra")])
edit = st.tuples(st.sampled_from(PATHS), st.one_of(st.none(), value))


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(edit, min_size=1, max_size=3))
def test_board_reader_never_crashes(tmp_path_factory, edits: list) -> None:
    doc = json.loads(json.dumps(BASE_BOARD))
    for (table, k), v in edits:
        tgt = doc if table is None else doc.setdefault(table, {})
        if not isinstance(tgt, dict):
            continue
        if v is None:
            tgt.pop(k, None)
        else:
            tgt[k] = v
    text = dump_toml(doc)
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return                               # our writer made something TOML rejects
    p = tmp_path_factory.mktemp("b") / "b.toml"
    p.write_text(text, encoding="utf-8")
    try:
        board = load_board(p)
    except HostctlError as e:
        assert str(p) in str(e) or "circuit" in str(e)
        return
    # a board that loads must also simulate
    assert all(v > 0 and math.isfinite(v) for v in board.resistors.values())
    bench = make_bench(board, 0)
    bench.set_tone(min(1000.0, board.audio_max_hz or 1000.0))
    res = bench.measure(20)
    assert res.n > 0


@pytest.mark.parametrize("text", [
    b"",
    b"circuit = 'color-organ'\n",                                  # no resistors
    b"\xff\xfe not utf-8",
    (BOARDS_DIR / "notebook.toml").read_bytes().replace(b"R_low = ", b"R_low = -"),
    (BOARDS_DIR / "notebook.toml").read_bytes().replace(b"bits = 10", b"bits = 99"),
    (BOARDS_DIR / "notebook.toml").read_bytes() + b"\n[resistors]\n",   # duplicated table
])
def test_board_bad_files_via_cli(tmp_path: Path, text: bytes) -> None:
    p = tmp_path / "b.toml"
    p.write_bytes(text)
    out = tmp_path / "run"
    code, err = cli(["calibrate", "--sim", str(p), "--out", str(out)])
    assert code == 2, err
    assert str(p) in one_line(err)
    assert not out.exists()


# ------------------------------------------------------------------ session files
def _good_session(tmp: Path) -> str:
    out = tmp / "good"
    code, err = cli(["calibrate", "--no-plot", "--max-tones", "12", "--window-ms", "50",
                     "--out", str(out), *SIM])
    assert code == 0, err
    return (out / "session.csv").read_text()


@pytest.fixture(scope="module")
def good_session(tmp_path_factory) -> str:
    return _good_session(tmp_path_factory.mktemp("good"))


def _sub(pattern: str, repl: str):
    return lambda t: re.sub(pattern, repl, t, count=1, flags=re.M).encode()


SESSION_CASES = {
    "empty": lambda t: b"",
    "truncated in the header": lambda t: t[:60].encode(),
    "wrong type": _sub(r"^[0-9.]+,low,", "abc,low,"),
    "nan": _sub(r"^[0-9.]+,low,", "nan,low,"),
    "inf gain": _sub(r"^([0-9.]+,low,)[^,]*", r"\1inf"),
    "negative frequency": _sub(r"^[0-9.]+,low,", "-20.0,low,"),
    "huge frequency": _sub(r"^[0-9.]+,low,", "1e300,low,"),
    "huge gain": _sub(r"^([0-9.]+,low,)[^,]*", r"\g<1>1e300"),
    "bad LED": _sub(r"^([0-9.]+,low,[^,]*,)1", r"\g<1>7"),
    "latin-1": lambda t: t.replace("notebook default", "notébook").encode("latin-1"),
    "utf-16": lambda t: t.encode("utf-16"),
    "duplicated header": _sub(r"^(frequency_hz,.*)$", r"\1\n\1"),
    "bad meta number": _sub(r"^# level_dbfs: .*$", "# level_dbfs: loud"),
    "bad meta window": _sub(r"^# window_ms: .*$", "# window_ms: -5"),
    "bad meta tones": _sub(r"^# max_tones: .*$", "# max_tones: 1e9"),
    "bad meta mode": _sub(r"^# mode: .*$", "# mode: sideways"),
    "bad meta series": _sub(r"^# series: .*$", "# series: E7"),
    "bad floor note": _sub(r"^# floor_rms: .*$", "# floor_rms: 0,x"),
    "short floor note": _sub(r"^# floor_rms: .*$", "# floor_rms: 0,0"),
    "extra fields": _sub(r"^[0-9.]+,low,", "20.0,low,7,8,9,"),
    "binary": lambda t: bytes(range(256)) * 4,
}


@pytest.mark.parametrize("case", list(SESSION_CASES))
def test_bad_session_resume(tmp_path: Path, good_session: str, case: str) -> None:
    data = SESSION_CASES[case](good_session)
    assert data != good_session.encode()
    (tmp_path / "session.csv").write_bytes(data)
    code, err = cli(["calibrate", "--no-plot", "--resume", str(tmp_path), *SIM])
    assert code == 2, err
    one_line(err)
    assert not (tmp_path / "report.json").exists()
    assert (tmp_path / "session.csv").read_bytes() == data     # untouched


def test_header_only_session_resumes(tmp_path: Path, good_session: str) -> None:
    """A run stopped before its first tone (notes after the header) is resumable."""
    head = "".join(ln + "\n" for ln in good_session.splitlines()
                   if ln.startswith("#") or ln.startswith("frequency_hz"))
    (tmp_path / "session.csv").write_text(head)
    code, err = cli(["calibrate", "--no-plot", "--resume", str(tmp_path), *SIM])
    assert code == 0, err
    assert (tmp_path / "report.json").exists()


# ------------------------------------------------------------------ CLI values
@pytest.mark.parametrize("args,code", [
    (["--capacitance", "-1e-6"], 2), (["--capacitance", "nan"], 2), (["--capacitance", "0"], 2),
    (["--circuit", "theremin"], 2), (["--series", "E7"], 2), (["--mode", "loud"], 2),
    (["--precision", "0"], 2), (["--precision", "-1%"], 2), (["--precision", "abc"], 2),
    (["--max-tones", "-3"], 2), (["--max-tones", "99999999"], 2), (["--level", "nan"], 2),
    (["--window-ms", "0"], 2), (["--led-threshold", "2"], 2), (["--installed", "R_low=-3"], 2),
    (["--installed", "R_nope=3"], 2), (["--target", "/nonexistent/t.toml"], 2),
    (["--port", "sim://?board=nope"], 2), (["--port", "sim://?faults=explode@3"], 2),
    (["--port", "/dev/ttyNOPE0"], 3),            # no such port: a device error
    (["--port", "loop://"], 3),                  # answers, but is not a hostctl probe
])
def test_bad_cli_values(tmp_path: Path, args: list[str], code: int) -> None:
    out = tmp_path / "run"
    argv = ["calibrate", "--no-plot", "--out", str(out), *args]
    if "--port" not in args:
        argv += SIM
    got, err = cli(argv)
    assert got == code, err
    one_line(err)
    assert not out.exists()                      # nothing half-written
