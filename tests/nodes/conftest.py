"""Fixtures for node tests (helpers live in nodes_helpers.py)."""

from __future__ import annotations

import gc
from pathlib import Path
import signal
from typing import Any

from nodes_helpers import NodeProcess, Probe, train_run
import pytest

TRAIN_STEPS = 100_000  # about a minute with 2 envs; reaches most goals


@pytest.fixture(autouse=True)
def no_long_gc_pauses():
    """
    Freeze the objects earlier tests left in this process while a node test runs.

    The robot side of these tests (probe, Streams) runs in the pytest process, which holds
    ~570k objects by the time they run (torch, gymnasium, hypothesis, earlier tests): each full
    collection paused every thread for 0.35-0.45 s, so the node saw no JointState for longer
    than obs_timeout and held (CI failures). Frozen objects are not scanned (gc.freeze).
    """
    gc.freeze()
    yield
    gc.unfreeze()


@pytest.fixture
def probe():
    """Provide a robot-side probe node in this process (closed after the test)."""
    p = Probe()
    yield p
    p.close()


@pytest.fixture
def node_process(tmp_path: Path):
    """Provide a node-process factory; every one still running is stopped after the test."""
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


@pytest.fixture(scope='session')
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Provide a run directory with a KukaReach policy trained briefly (run_dir/policy.onnx)."""
    return train_run(tmp_path_factory.mktemp('kuka') / 'run', env_id='trpo_ros/KukaReach-v0',
                     total_steps=TRAIN_STEPS, n_steps=2048, n_envs=2, seed=0, eval_every=1000,
                     checkpoint_every=1000)
