"""The README's two commands, the lock they install from, and .ci/run running the second.

A new user runs exactly what the README opens with; CI must run the same test command, and
the set-up must install exact versions (torch a CPU build) so a fresh machine reproduces the
environment the suite is green with.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    """The command lines of the README's first code block (comments dropped)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    m = re.search(r"^```(?:sh|bash|console)?\n(.*?)^```", text, re.S | re.M)
    assert m, "README.md has no code block"
    lines = [ln.split("#", 1)[0].strip() for ln in m.group(1).splitlines()]
    return [ln for ln in lines if ln]


def shell_lines(path: Path) -> list[str]:
    lines = [ln.split("#", 1)[0].strip() for ln in path.read_text().splitlines()]
    return [ln for ln in lines if ln]


def test_readme_opens_with_exactly_two_commands():
    cmds = readme_commands()
    assert len(cmds) == 2, cmds
    setup_and_calibrate, setup_and_test = cmds
    assert setup_and_calibrate == "./scripts/dev calibrate"
    assert setup_and_test == "./scripts/dev test"
    # the code block is the first thing after the title and one sentence
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert text.index("```") < text.index("\n## ")


def test_ci_runs_the_readmes_test_command():
    test_cmd = readme_commands()[1]
    ci = shell_lines(ROOT / ".ci" / "run")
    assert test_cmd in ci, ci
    # ... after the system packages, from the one script that installs them
    assert "bash scripts/install-system-packages.sh" in ci
    assert ci.index("bash scripts/install-system-packages.sh") < ci.index(test_cmd)


def test_dev_script_runs_what_the_readme_says():
    dev = ROOT / "scripts" / "dev"
    assert os.access(dev, os.X_OK)
    body = dev.read_text()
    assert re.search(r'"\$VENV/bin/hostctl" calibrate --sim "\$@"', body)
    assert re.search(r'"\$VENV/bin/python" -m pytest .*"\$@"', body)
    assert '-r "$LOCK"' in body


def _lock() -> dict[str, str]:
    pins = {}
    for ln in shell_lines(ROOT / "requirements.lock"):
        name, sep, version = ln.partition("==")
        assert sep and re.fullmatch(r"[0-9][0-9A-Za-z.+!-]*", version), f"not an exact pin: {ln}"
        pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


def test_lock_pins_every_dependency_exactly():
    pins = _lock()
    assert pins["torch"] == "2.13.0"             # the CPU wheel; newer is a CUDA build here
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        wanted += extra
    wanted.append("setuptools")                  # the build backend (installs without isolation)
    for req in wanted:
        name = re.split(r"[<>=!~\[; ]", req, maxsplit=1)[0]
        assert re.sub(r"[-_.]+", "-", name).lower() in pins, f"{name} not in requirements.lock"
