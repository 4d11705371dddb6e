"""Shared test set-up.

Paths: pyproject's ``pythonpath`` puts this checkout, ``examples/`` and ``tests/`` first on
sys.path, so no test edits sys.path itself; a script of ``benchmarks/`` (not a package) is
loaded by :func:`benchmark_script` / the ``benchmark_script`` fixture.

The virtual bench is opted in once here (``sims.backend.install()``: ``sim://`` ports and
``sim:`` tone outputs), as the CLI does for its commands; hostctl itself never looks for it.

Parallel runs (``-n 2``, pytest-xdist) and other runs on the same machine: tests marked
``sound_server`` play into and record from the one PulseAudio null sink, and tests marked
``firmware_build`` run ``make`` in firmware/. Each kind holds an exclusive file lock while it
runs (a whole module when the module is marked, so its module fixtures are covered), so two
of them never overlap, whichever worker or process they run in.

Hypothesis runs without wall-clock deadlines (the profile below).
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import HealthCheck, settings

import sims.backend

# The tests opt in to the virtual bench (sim:// ports, sim: tone outputs), as the CLI does;
# a `python -m hostctl` they start opts in through $HOSTCTL_BACKENDS (an installed hostctl
# finds it by its entry point; an install older than the entry point would not).
sims.backend.install()
os.environ.setdefault("HOSTCTL_BACKENDS", "sims.backend")

# Property tests: no per-example deadline and no "too slow" health check. Both are wall-clock
# limits that a busy machine trips; a test's own @settings still sets its example count.
settings.register_profile("hostctl", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("hostctl")

ROOT = Path(__file__).resolve().parents[1]
_SOCK = os.environ.get("HOSTCTL_PULSE_SOCKET", "/tmp/hostctl-pulse.sock")
LOCKS = {
    # the sound server is one per machine (.ci/pulse.sh's socket), whoever runs the tests
    "sound_server": Path(_SOCK).with_suffix(".lock"),
    # firmware/build is one per checkout
    "firmware_build": Path(tempfile.gettempdir()) / (
        "hostctl-firmware-" + hashlib.sha1(str(ROOT).encode()).hexdigest()[:12] + ".lock"),
}
_held: dict[str, tuple[int, int]] = {}      # lock name -> (fd, depth): re-entrant per process


@contextmanager
def exclusive(name: str) -> Iterator[None]:
    """Hold lock ``name`` (blocking until the other holder is done)."""
    if name in _held:
        fd, depth = _held[name]
        _held[name] = (fd, depth + 1)
    else:
        fd = os.open(LOCKS[name], os.O_RDWR | os.O_CREAT, 0o666)
        fcntl.flock(fd, fcntl.LOCK_EX)
        _held[name] = (fd, 1)
    try:
        yield
    finally:
        fd, depth = _held.pop(name)
        if depth > 1:
            _held[name] = (fd, depth - 1)
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def _marked(node: pytest.Item | pytest.Collector) -> list[str]:
    return [n for n in LOCKS if node.get_closest_marker(n)]


@pytest.fixture(scope="module", autouse=True)
def _module_lock(request: pytest.FixtureRequest) -> Iterator[None]:
    names = _marked(request.node)
    if not names:
        yield
        return
    with exclusive(names[0]):
        yield


@pytest.fixture(autouse=True)
def _test_lock(request: pytest.FixtureRequest) -> Iterator[None]:
    names = _marked(request.node)
    if not names:
        yield
        return
    with exclusive(names[0]):
        yield


def benchmark_script(name: str) -> ModuleType:
    """``benchmarks/NAME.py`` as a module, its folder importable while it loads (its own
    helpers, e.g. ``common``), without leaving benchmarks/ on sys.path for other tests."""
    if name in sys.modules:
        return sys.modules[name]
    folder = str(ROOT / "benchmarks")
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    assert spec is not None and spec.loader is not None, name
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    sys.path.insert(0, folder)
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(folder)
    return module


@pytest.fixture(name="benchmark_script")
def _benchmark_script() -> Callable[[str], ModuleType]:
    return benchmark_script
