"""Trainer integration: run directory, resume, determinism, the trust-region property."""

import math
import os
from pathlib import Path
import signal
import subprocess
import sys
import time

import pytest
import torch
from trpo_ros.core.checkpoint import list_checkpoints, load_checkpoint, load_policy
from trpo_ros.core.config import ConfigError, TRPOConfig
from trpo_ros.core.metrics import read_metrics, TIMING
from trpo_ros.core.trainer import Trainer
from trpo_ros.errors import UserError
from trpo_ros.export import export_onnx

pytestmark = pytest.mark.integration

SMALL = {'env_id': 'Pendulum-v1', 'n_steps': 256, 'total_steps': 1024, 'checkpoint_every': 2,
         'eval_every': 2, 'eval_episodes': 2, 'seed': 3}


def _train(run_dir: Path, **changes) -> Trainer:
    trainer = Trainer(TRPOConfig(**{**SMALL, **changes}), run_dir, tensorboard=False,
                      exporter=export_onnx)
    trainer.train()
    trainer.close()
    return trainer


def test_run_directory_holds_everything(tmp_path):
    trainer = _train(tmp_path / 'run', checkpoint_every=1)
    run = tmp_path / 'run'
    assert (run / 'config.json').is_file()
    rows = read_metrics(run / 'metrics.csv')
    assert [int(r['iteration']) for r in rows] == [1, 2, 3, 4]
    assert (run / 'learning_curve.png').stat().st_size > 1000
    assert (run / 'policy.onnx').is_file() and (run / 'best.onnx').is_file()
    assert len(list_checkpoints(run / 'checkpoints')) == 3  # only the newest are kept
    assert trainer.env_steps == 1024
    # Every accepted step stayed inside the trust region it was taken with.
    for row in rows:
        assert row['train/kl'] <= row['train/delta']
        assert math.isfinite(row['train/value_loss'])


def test_same_seed_same_metrics(tmp_path):
    _train(tmp_path / 'a', eval_every=0)
    _train(tmp_path / 'b', eval_every=0)
    a, b = (read_metrics(tmp_path / name / 'metrics.csv') for name in 'ab')
    for row_a, row_b in zip(a, b, strict=True):
        for key in row_a:
            if key not in TIMING:
                assert (row_a[key] == row_b[key]
                        or (math.isnan(row_a[key]) and math.isnan(row_b[key]))), key


def test_resume_continues_iteration_delta_and_weights(tmp_path):
    run = tmp_path / 'run'
    first = _train(run, trust_region='adaptive')
    state = load_checkpoint(list_checkpoints(run / 'checkpoints')[-1])
    resumed = Trainer(TRPOConfig(**{**SMALL, 'total_steps': 2048}), run, resume=True,
                      tensorboard=False)
    assert resumed.iteration == first.iteration == state['iteration']
    assert resumed.trust_region.delta == first.trust_region.delta
    for name, tensor in resumed.policy.actor.state_dict().items():
        assert torch.equal(tensor, state['actor'][name])
    assert torch.equal(resumed.policy.normalizer.mean, state['normalizer']['mean'])
    resumed.train()
    resumed.close()
    rows = read_metrics(run / 'metrics.csv')
    assert [int(r['iteration']) for r in rows] == list(range(1, 9))


def test_new_run_refuses_to_overwrite_existing_run(tmp_path):
    _train(tmp_path / 'run')
    before = (tmp_path / 'run' / 'metrics.csv').read_bytes()
    with pytest.raises(ValueError, match='already holds a run'):
        Trainer(TRPOConfig(**SMALL), tmp_path / 'run', tensorboard=False)
    assert (tmp_path / 'run' / 'metrics.csv').read_bytes() == before


def test_torn_newest_checkpoint_falls_back_to_previous_good(tmp_path):
    run = tmp_path / 'run'
    _train(run)
    newest = list_checkpoints(run / 'checkpoints')[-1]
    newest.write_bytes(newest.read_bytes()[:100])  # what a crash mid-write would leave
    resumed = Trainer(TRPOConfig(**SMALL), run, resume=True, tensorboard=False)
    assert resumed.iteration == 2
    resumed.close()


def test_sigkill_during_training_resumes_from_last_good_checkpoint(tmp_path):
    run = tmp_path / 'run'
    env = {**os.environ, 'PYTHONUNBUFFERED': '1'}
    proc = subprocess.Popen(
        [sys.executable, '-m', 'trpo_ros.cli', 'train', '--env', 'Pendulum-v1',
         '--n-steps', '128', '--total-steps', '1000000', '--checkpoint-every', '1',
         '--eval-every', '0', '--run-dir', str(run), '--no-progress'],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while len(list_checkpoints(run / 'checkpoints')) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.137)  # land somewhere inside a later iteration or checkpoint write
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    resumed = Trainer(TRPOConfig(**SMALL), run, resume=True, tensorboard=False)
    assert resumed.iteration >= 3
    bundle = load_policy(run)
    assert bundle.iteration == resumed.iteration
    resumed.close()


@pytest.mark.learning
def test_pendulum_learns_within_100k_steps(tmp_path):
    config = TRPOConfig(env_id='Pendulum-v1', total_steps=100_000, n_steps=1024, seed=0,
                        eval_every=0, checkpoint_every=1000)
    trainer = Trainer(config, tmp_path / 'run', tensorboard=False)
    trainer.train()
    result = trainer.evaluate(10)
    trainer.close()
    assert result['return_mean'] >= -300, result


def test_regression_guard_restores_previous_policy_and_shrinks_delta(tmp_path):
    from torch.nn.utils import parameters_to_vector

    config = TRPOConfig(**{**SMALL, 'rollback_on_regression': True, 'regression_tolerance': 0.2,
                           'total_steps': 512})
    trainer = Trainer(config, tmp_path / 'run', tensorboard=False)
    trainer.train()  # two iterations: previous_policy holds theta before the last step
    before_step = trainer.previous_policy.clone()
    delta = trainer.trust_region.delta
    # A fall within the tolerance (20 % of |return|) keeps the policy.
    trainer.last_return = -1000.0
    assert not trainer._regression_guard(-1150.0)
    assert trainer.previous_policy is not None
    # A batch far below the last one: theta_old comes back, delta shrinks, no policy step.
    trainer.last_return = 1e9
    row = trainer.train_iteration()
    trainer.close()
    assert row['train/rolled_back'] == 1.0 and row['train/step_accepted'] == 0.0
    assert torch.equal(parameters_to_vector(trainer.policy.actor.parameters()), before_step)
    assert row['train/delta_next'] == max(config.delta_min, delta * config.delta_shrink)


def test_export_is_a_hook_the_trainer_is_handed(tmp_path):
    plain = Trainer(TRPOConfig(**SMALL), tmp_path / 'plain', tensorboard=False)
    plain.train()
    assert not (tmp_path / 'plain' / 'policy.onnx').exists()  # core alone writes no ONNX
    with pytest.raises(ConfigError, match='no exporter'):
        plain.export()
    plain.close()

    def failing(checkpoint: Path, path: Path) -> Path:
        raise UserError(f'cannot export {checkpoint.name}')

    trainer = Trainer(TRPOConfig(**SMALL), tmp_path / 'failing', tensorboard=False,
                      exporter=failing)
    trainer.train()  # training goes on; the error is kept for the caller to report
    assert trainer.env_steps == SMALL['total_steps']
    assert 'cannot export' in trainer.last_export_error
    trainer.close()
