"""hostctl.protocol: CRC, encode/parse round trips, the integer stats formulas, vectors."""

from __future__ import annotations

import codecs
import math
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hostctl import protocol as p
from hostctl.errors import ProtocolError


def test_crc_check_value():
    assert p.crc16(b"123456789") == 0x29B1
    assert p.crc16(b"") == 0xFFFF


def test_with_crc_format():
    line = p.with_crc("! BOOT fw=hostctl-probe/1.0.0 proto=1")
    assert line.endswith(b"\n")
    body, crc = line[:-1].rsplit(b" ", 1)
    assert crc == b"*%04X" % p.crc16(body)
    assert len(crc) == 5


def test_encode_command():
    line = p.encode_command(2, "MEASURE", 200)
    assert line.startswith(b"2 MEASURE 200 *")
    assert line == p.with_crc("2 MEASURE 200")
    assert len(line) <= p.MAX_COMMAND_LINE
    for bad in [(0, "PING"), (65536, "PING"), (1, "ping"), (1, "PING", "a b"), (1, "PING", "")]:
        with pytest.raises(ValueError):
            p.encode_command(*bad)
    with pytest.raises(ValueError):
        p.encode_command(1, "PING", "x" * 80)


def test_parse_ok_err_async():
    r = p.parse_reply(p.with_crc("1 OK HELLO proto=1 fw=hostctl-probe/1.0.0 rate_hz=9000"))
    assert (r.id, r.ok, r.verb, r.is_async) == (1, True, "HELLO", False)
    assert r.fields == {"proto": "1", "fw": "hostctl-probe/1.0.0", "rate_hz": "9000"}
    e = p.parse_reply(p.with_crc("7 ERR 4 bad-crc") + b"")
    assert (e.id, e.ok, e.verb, e.err_code, e.err_reason) == (7, False, "", 4, "bad-crc")
    a = p.parse_reply(p.with_crc("! BOOT fw=x/1 proto=1")[:-1] + b"\r\n")
    assert a.is_async and a.verb == "BOOT" and a.fields["proto"] == "1"
    z = p.parse_reply(p.with_crc("0 ERR 2 bad-syntax"))
    assert z.id == 0


@pytest.mark.parametrize("line", [
    b"1 OK PING\n",                          # no CRC
    b"1 OK PING *0000\n",                    # wrong CRC
    b"1 OK PING *29b1\n",                    # lowercase hex
    b"",
    b"\n",
])
def test_parse_rejects(line):
    with pytest.raises(ProtocolError):
        p.parse_reply(line)


@pytest.mark.parametrize("text", [
    "01 OK PING", "70000 OK PING", "1 OK ping", "1 OK", "1 ERR 4", "1 ERR x bad",
    "1 ERR 4 bad-crc extra", "1 OK PING a", "1 OK PING A=1", "1 OK PING a=1 a=2",
    "1  OK PING", "! boot", "!", "1 MAYBE PING", "1 OK PING\tx=1",
])
def test_parse_rejects_bad_syntax_with_good_crc(text):
    with pytest.raises(ProtocolError):
        p.parse_reply(p.with_crc(text))


def test_parse_rejects_flipped_bits():
    line = p.with_crc("5 OK MEASURE ms=200 n=480")
    for i in range(len(line) - 1):
        for bit in range(8):
            bad = bytearray(line)
            bad[i] ^= 1 << bit
            with pytest.raises(ProtocolError):
                p.parse_reply(bytes(bad))


def test_channel_stats_fields_formulas():
    xs = [409, 614, 511, 512, 700, 300, 1023, 0]
    n, s, q = len(xs), sum(xs), sum(x * x for x in xs)
    m, r, lo, hi = p.channel_stats_fields(xs)
    assert m == (s * 1000 + n // 2) // n
    assert r == math.isqrt(((n * q - s * s) // n) * 1000000 // n)
    assert (lo, hi) == (0, 1023)
    mean = s / n
    rms = math.sqrt(sum((x - mean) ** 2 for x in xs) / n)
    assert abs(m / 1000 - mean) <= 0.0005
    assert 0 <= rms - r / 1000 < 0.002
    assert p.channel_stats_fields([512] * 10) == (512000, 0, 512, 512)
    # rounding of the mean: 1,2 -> 1.5 exactly; 0,0,1 -> 0.333
    assert p.channel_stats_fields([1, 2])[0] == 1500
    assert p.channel_stats_fields([0, 0, 1])[0] == 333
    assert p.channel_stats_fields([0, 1, 1])[0] == 667
    with pytest.raises(ValueError):
        p.channel_stats_fields([])


def test_channel_stats_fields_large_window_exact():
    rng = random.Random(1)
    xs = [rng.randrange(1024) for _ in range(65535)]
    m, r, _, _ = p.channel_stats_fields(xs)
    n, s, q = len(xs), sum(xs), sum(x * x for x in xs)
    assert n * q < 2**64 and ((n * q - s * s) // n) * 1000000 < 2**64  # fits the firmware
    assert r == math.isqrt(((n * q - s * s) // n) * 1000000 // n)


def test_format_milli():
    assert p.format_milli(511734) == "511.734"
    assert p.format_milli(0) == "0.000"
    assert p.format_milli(5) == "0.005"
    assert p.format_milli(1023000) == "1023.000"
    assert p.format_milli(-1500) == "-1.500"


def _measure_line(cid: int, chans: list[list[int]], lit: tuple[int, int, int], ms=200) -> bytes:
    n = len(chans[0])
    parts = [f"{cid} OK MEASURE ms={ms} n={n} rate_hz={n * 1000 // ms}"]
    parts += [f"a{i}={p.format_stats(c)}" for i, c in enumerate(chans)]
    parts.append("led=" + ",".join(map(str, lit)))
    return p.with_crc(" ".join(parts))


def test_parse_measure_roundtrip():
    chans = [[511, 600, 420], [511, 550, 470], [512, 512, 512], [0, 1023, 5]]
    res = p.parse_measure(p.parse_reply(_measure_line(3, chans, (3, 1, 0))))
    assert (res.ms, res.n, res.rate_hz) == (200, 3, 15)
    assert res.led_lit == (3, 1, 0)
    assert res.led_fraction == (1.0, 1 / 3, 0.0)
    for st_, c in zip(res.analog, chans, strict=True):
        m, r, lo, hi = p.channel_stats_fields(c)
        assert st_.mean == m / 1000 and st_.rms == r / 1000 and (st_.min, st_.max) == (lo, hi)
        assert st_.n == 3


@pytest.mark.parametrize("text", [
    "1 OK PING",
    "1 OK MEASURE ms=1 n=0 rate_hz=0 a0=1.000,0.000,1,1 a1=1.000,0.000,1,1 "
    "a2=1.000,0.000,1,1 a3=1.000,0.000,1,1 led=0,0,0",
    "1 OK MEASURE ms=1 n=1 rate_hz=1 a0=1.000,0.000,1,1 a1=1.000,0.000,1,1 "
    "a2=1.000,0.000,1,1 led=0,0,0",
    "1 OK MEASURE ms=1 n=1 rate_hz=1 a0=1.00,0.000,1,1 a1=1.000,0.000,1,1 "
    "a2=1.000,0.000,1,1 a3=1.000,0.000,1,1 led=0,0,0",
    "1 OK MEASURE ms=1 n=1 rate_hz=1 a0=1.000,0.000,1,1 a1=1.000,0.000,1,1 "
    "a2=1.000,0.000,1,1 a3=1.000,0.000,1,1 led=0,2,0",
    "1 OK MEASURE ms=1 n=1 rate_hz=1 a0=9.000,0.000,1,1 a1=1.000,0.000,1,1 "
    "a2=1.000,0.000,1,1 a3=1.000,0.000,1,1 led=0,0,0",
    "1 OK MEASURE ms=x n=1 rate_hz=1 a0=1.000,0.000,1,1 a1=1.000,0.000,1,1 "
    "a2=1.000,0.000,1,1 a3=1.000,0.000,1,1 led=0,0,0",
])
def test_parse_measure_rejects(text):
    with pytest.raises(ProtocolError):
        p.parse_measure(p.parse_reply(p.with_crc(text)))


def test_parse_measure_ignores_unknown_keys():
    chans = [[511, 600]] * 4
    line = _measure_line(3, chans, (0, 0, 0))
    body = line[:-1].rsplit(b" ", 1)[0] + b" future_key=1"
    res = p.parse_measure(p.parse_reply(p.with_crc(body.decode())))
    assert res.n == 2


# --- property tests ----------------------------------------------------------------------

@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=120))
def test_arbitrary_bytes_only_protocol_error(data):
    try:
        r = p.parse_reply(data)
    except ProtocolError:
        return
    assert isinstance(r, p.Reply)
    try:
        p.parse_measure(r)
    except ProtocolError:
        pass


_printable = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=90)


@settings(max_examples=400, deadline=None)
@given(_printable)
def test_arbitrary_text_with_valid_crc_only_protocol_error(text):
    try:
        r = p.parse_reply(p.with_crc(text))
    except ProtocolError:
        return
    try:
        p.parse_measure(r)
    except ProtocolError:
        pass


_key = st.from_regex(r"[a-z0-9_]{1,8}", fullmatch=True)
_val = st.from_regex(r"[!-~]{0,10}", fullmatch=True)
_verb = st.from_regex(r"[A-Z]{1,8}", fullmatch=True)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 65535), _verb, st.dictionaries(_key, _val, max_size=6))
def test_ok_reply_roundtrip(rid, verb, fields):
    text = " ".join([str(rid), "OK", verb] + [f"{k}={v}" for k, v in fields.items()])
    r = p.parse_reply(p.with_crc(text))
    assert (r.id, r.ok, r.verb, r.fields) == (rid, True, verb, fields)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 65535), st.sampled_from(sorted(p.ERRORS)))
def test_err_reply_roundtrip(rid, code):
    r = p.parse_reply(p.with_crc(f"{rid} ERR {code} {p.ERRORS[code]}"))
    assert (r.id, r.ok, r.err_code, r.err_reason) == (rid, False, code, p.ERRORS[code])


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 65535), _verb,
       st.lists(st.from_regex(r"[!-)+-~][!-~]{0,6}", fullmatch=True), max_size=5))
def test_encode_command_parses_back(cid, verb, args):
    line = p.encode_command(cid, verb, *args)
    assert line.endswith(b"\n") and len(line) <= p.MAX_COMMAND_LINE
    body, crc, present = p.split_crc(line[:-1].decode())
    assert present and crc == p.crc16(body.encode())
    assert body.split(" ") == [str(cid), verb, *args]


@st.composite
def _four_channels(draw):
    n = draw(st.integers(1, 50))
    return [draw(st.lists(st.integers(0, 1023), min_size=n, max_size=n)) for _ in range(4)]


@settings(max_examples=150, deadline=None)
@given(_four_channels(), st.integers(1, 5000))
def test_measure_roundtrip_property(chans, ms):
    n = len(chans[0])
    lit = (0, n // 2, n)
    res = p.parse_measure(p.parse_reply(_measure_line(9, chans, lit, ms=ms)))
    assert res.n == n and res.led_lit == lit
    for s, c in zip(res.analog, chans, strict=True):
        assert abs(s.mean - sum(c) / n) <= 0.0005 + 1e-12
        assert (s.min, s.max) == (min(c), max(c))


# --- shared vectors written by helper FIRMWARE (firmware/vectors/) -----------------------

VECTORS = Path(__file__).resolve().parent.parent / "firmware" / "vectors"


def _vector_records(name: str) -> list[tuple[int, str, str]]:
    path = VECTORS / name
    if not path.exists():
        pytest.skip(f"{path} not present (firmware vectors not written yet)")
    out = []
    for lineno, line in enumerate(path.read_text(encoding="ascii").split("\n"), 1):
        if not line or line.startswith("#"):
            continue
        kind, _, rest = line.partition(" ")
        out.append((lineno, kind, rest))
    return out


def samples_from_list(s: str) -> list[int]:
    xs: list[int] = []
    for t in s.split(","):
        v, _, k = t.partition("*")
        xs += [int(v)] * int(k or 1)
    return xs


def test_vectors_crc():
    recs = _vector_records("crc.txt")
    assert recs
    for lineno, kind, rest in recs:
        assert kind == "crc", lineno
        hexv, _, text = rest.partition(" ")
        data = codecs.escape_decode(text.encode("ascii"))[0]
        assert p.crc16(data) == int(hexv, 16), f"crc.txt:{lineno}"


def _crc16_bitwise(data: bytes) -> int:
    """The CRC the firmware computes, bit by bit (probe_core.c), as the reference."""
    crc = 0xFFFF
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def test_crc16_is_crc_hqx_and_the_firmwares():
    """binascii.crc_hqx(., 0xFFFF) == the firmware's bitwise CRC on its vectors and on
    random lines of every length a protocol line can have (and the one-byte alphabet)."""
    import binascii
    import random

    recs = _vector_records("crc.txt")
    for lineno, _, rest in recs:
        hexv, _, text = rest.partition(" ")
        data = codecs.escape_decode(text.encode("ascii"))[0]
        assert _crc16_bitwise(data) == int(hexv, 16) == binascii.crc_hqx(data, 0xFFFF), lineno
    rng = random.Random(16)
    cases = [bytes([b]) for b in range(256)]
    cases += [rng.randbytes(n) for n in range(0, 300) for _ in range(3)]
    for data in cases:
        assert p.crc16(data) == _crc16_bitwise(data), data


def test_vectors_stats():
    recs = _vector_records("stats.txt")
    assert len(recs) > 10
    for lineno, kind, rest in recs:
        assert kind == "stats", lineno
        lhs, _, rhs = rest.partition(" -> ")
        mean, rms, lo, hi = rhs.split()
        m, r, a, b = p.channel_stats_fields(samples_from_list(lhs))
        assert (p.format_milli(m), p.format_milli(r), str(a), str(b)) == (mean, rms, lo, hi), \
            f"stats.txt:{lineno}"
