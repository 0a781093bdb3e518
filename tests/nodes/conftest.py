"""Fixtures for node tests (helpers live in nodes_helpers.py)."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest
from nodes_helpers import NodeProcess, Probe


@pytest.fixture
def probe():
    """A robot-side probe node in this process (closed after the test)."""
    p = Probe()
    yield p
    p.close()


@pytest.fixture
def node_process(tmp_path: Path):
    """Factory starting node processes; every one still running is stopped after the test."""
    started: list[NodeProcess] = []

    def start(module: str, **params: Any) -> NodeProcess:
        proc = NodeProcess(module, params, tmp_path / f'{module.rsplit(".", 1)[-1]}_'
                           f'{len(started)}.log')
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.alive():
            proc.stop(signal.SIGKILL)
