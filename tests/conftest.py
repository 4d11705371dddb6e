"""Shared test set-up.

Paths: pyproject's ``pythonpath`` puts this checkout, ``examples/`` and ``tests/`` first on
sys.path, so no test edits sys.path itself.

Parallel runs (``-n 2``, pytest-xdist, ``--dist loadgroup``): tests marked ``sound_server``
play into and record from the one PulseAudio null sink, and tests marked ``firmware_build``
run ``make`` in firmware/; each group runs in one worker, in order, never beside itself.
"""

from __future__ import annotations

import pytest

GROUPS = ("sound_server", "firmware_build")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        for name in GROUPS:
            if item.get_closest_marker(name):
                item.add_marker(pytest.mark.xdist_group(name))
                break
