"""`hostctl check` on the virtual bench: a healthy board passes; a dead channel, a missing
reference, a wrong bias and swapped outputs each fail with the right cause (sims/wiring.py
makes the faults)."""

from __future__ import annotations

import json

import pytest

from hostctl.cli import invoke


def check(faults: str | None = None) -> tuple[int, dict]:
    args = ["check", "--sim", "bench", "--seed", "1", "--json"]
    code, err, out = invoke(args + (["--faults", faults] if faults else []))
    assert code in (0, 1), err
    return code, json.loads(out)


def failed(rep: dict) -> dict[str, dict]:
    return {it["item"]: it for it in rep["items"] if not it["pass"]}


def test_a_healthy_board_passes() -> None:
    code, rep = check()
    assert code == 0 and rep["pass"] is True
    names = [it["item"] for it in rep["items"]]
    assert sum("bias" in n for n in names) == 4               # every pin
    assert sum("toggles" in n for n in names) == 3            # every LED
    assert any("reference" in n for n in names)


@pytest.mark.parametrize("faults,item,cause", [
    ("dead:A2", "A2 (band) alive", "no signal on A2"),
    ("noref", "A0 reference present", "no tone reaches A0"),
    ("bias:A3=0.6", "A3 bias near mid-rail", "A3 sits at 0.60 V"),
    ("swap:A1-A3", "A1 (low) alive", "outputs swapped"),
])
def test_each_fault_fails_with_its_cause(faults: str, item: str, cause: str) -> None:
    code, rep = check(faults)
    assert code == 1 and rep["pass"] is False
    bad = failed(rep)
    hit = [it for name, it in bad.items() if name.startswith(item)]
    assert hit, (item, list(bad))
    assert cause in hit[0]["cause"] and hit[0]["fix"], hit[0]
    # nothing unrelated is blamed: the bias, reference and LED items of the other pins pass
    others = [n for n in bad if "bias" in n and not n.startswith(item.split()[0])]
    assert not others, others
    assert not [n for n in bad if "toggles" in n], list(bad)


def test_swapped_outputs_name_both_pins() -> None:
    _, rep = check("swap:A1-A3")
    bad = failed(rep)
    assert set(bad) == {"A1 (low) alive and shaped like its filter",
                        "A3 (high) alive and shaped like its filter"}
    assert "A3" in bad["A1 (low) alive and shaped like its filter"]["fix"]


def test_text_output_and_bad_use() -> None:
    code, err, out = invoke(["check", "--sim", "bench", "--seed", "1", "--faults", "dead:A2"])
    assert code == 1
    lines = out.splitlines()
    assert lines[-1].startswith("wiring: FAIL (1 of")
    i = next(k for k, ln in enumerate(lines) if ln.startswith("FAIL"))
    assert any(ln.strip().startswith("cause: no signal on A2") for ln in lines[i + 1:i + 4])
    code, err, _ = invoke(["check", "--port", "/dev/ttyX", "--faults", "noref"])
    assert code == 2 and "--faults only works with --sim" in err
    code, err, _ = invoke(["check", "--sim", "bench", "--faults", "dead:A9"])
    assert code == 2 and "bad wiring item 'dead:A9'" in err
