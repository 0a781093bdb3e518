"""TrainingController: training in a thread, requests between iterations, no ROS."""

from __future__ import annotations

import threading
import time

import pytest
from trpo_ros.core.checkpoint import load_checkpoint
from trpo_ros.core.config import TRPOConfig
from trpo_ros.core.controller import TrainingController
from trpo_ros.core.trainer import Trainer
from trpo_ros.export import export_onnx
from trpo_ros.runtime import Policy

pytestmark = pytest.mark.integration


def test_requests_between_iterations_pause_stop_and_the_end(tmp_path):
    config = TRPOConfig(env_id='Pendulum-v1', n_steps=128, total_steps=128 * 12,
                        checkpoint_every=100, eval_every=0)
    trainer = Trainer(config, tmp_path / 'run', tensorboard=False, exporter=export_onnx)
    rows: list[dict] = []
    ended: list[tuple] = []
    finished = threading.Event()

    def on_end(state, error):
        ended.append((state, error))
        finished.set()

    controller = TrainingController(trainer, rows.append, on_end)
    try:
        controller.start()
        assert controller.running and controller.state == 'training'
        load_checkpoint(controller.save())  # whole, between two iterations
        assert Policy.load(controller.export()).action_dim == 1
        assert controller.pause(True).startswith('paused') and controller.state == 'paused'
        time.sleep(0.5)
        count = len(rows)
        time.sleep(0.5)
        assert len(rows) == count, 'iterations went on while paused'
        assert controller.pause(False) == 'resumed'
        assert finished.wait(timeout=120)
        assert ended == [('done', None)] and controller.state == 'done'
        assert rows[-1]['env_steps'] >= config.total_steps
        assert controller.stop(timeout=5)
        load_checkpoint(controller.save())  # no iteration runs any more: saved at once
    finally:
        controller.stop(timeout=5)
        trainer.close()
