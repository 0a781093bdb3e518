"""
Test the Ray rollout backend.

Batch layout, normalizer from the joined batch, 1 worker == local, a worker killed
mid-collection, an unreachable cluster. One local Ray instance (127.0.0.1).
"""

import logging
import math
import os
import socket
import threading
import time

import numpy as np
import pytest
import torch
from trpo_ros.core.backends import make_collector
from trpo_ros.core.config import ConfigError, TRPOConfig
from trpo_ros.core.metrics import read_metrics, TIMING
from trpo_ros.core.networks import ObsNormalizer
from trpo_ros.core.policy import PolicyModel
from trpo_ros.core.rollout import make_env
from trpo_ros.core.trainer import Trainer

pytestmark = pytest.mark.integration

from trpo_ros.core.ray_rollout import LOCAL_RAY_ENV, RayCollector  # noqa: E402, I100

for _key, _value in LOCAL_RAY_ENV.items():  # before the first `import ray`: stay on 127.0.0.1
    os.environ.setdefault(_key, _value)
ray = pytest.importorskip('ray')

PENDULUM = {'env_id': 'Pendulum-v1', 'n_steps': 256, 'eval_every': 0, 'checkpoint_every': 100,
            'seed': 7}


@pytest.fixture(scope='module', autouse=True)
def local_ray(tmp_path_factory: pytest.TempPathFactory):
    """One local Ray instance for the module, bound to loopback, 2 CPUs."""
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address='127.0.0.1',
             _temp_dir=str(tmp_path_factory.mktemp('ray')), logging_level=logging.WARNING)
    yield
    ray.shutdown()


def _policy(config: TRPOConfig) -> PolicyModel:
    env = make_env(config.env_id, config.env_kwargs)
    space = env.action_space
    policy = PolicyModel.build(config, env.observation_space.shape[0], space.low, space.high)
    env.close()
    return policy


def test_trainer_on_two_workers_batch_metrics_and_normalizer(tmp_path):
    config = TRPOConfig(**PENDULUM, rollout_backend='ray', num_workers=2, envs_per_worker=1,
                        total_steps=3 * 512)
    trainer = Trainer(config, tmp_path / 'run', tensorboard=False)
    batches = []
    collect = trainer.collector.collect

    def recording_collect(*args, **kwargs):
        batch = collect(*args, **kwargs)
        batches.append(batch)
        return batch

    trainer.collector.collect = recording_collect
    trainer.train()
    trainer.close()

    rows = read_metrics(tmp_path / 'run' / 'metrics.csv')
    assert [int(r['env_steps']) for r in rows] == [512, 1024, 1536]
    for row in rows:
        assert math.isfinite(row['train/kl']) and row['train/kl'] <= row['train/delta']
        assert row['rollout/lost_steps'] == 0
    assert all(b.obs.shape == (256, 2, 3) and b.size == 512 for b in batches)
    # Pendulum episodes are 200 steps: each env ends one in the first batch.
    assert len(batches[0].episode_returns) == 2
    # The learner's normalizer has taken in every raw observation of both workers: the
    # reset ones and one per step per env.
    assert float(trainer.policy.normalizer.count) == pytest.approx(2 + 3 * 512 + 1e-4)
    assert [b.obs_moments[2] for b in batches] == [514, 512, 512]
    reference = ObsNormalizer(3)
    for batch in batches:
        reference.merge(*batch.obs_moments)
    assert torch.allclose(trainer.policy.normalizer.mean, reference.mean, rtol=1e-12, atol=1e-12)
    assert torch.allclose(trainer.policy.normalizer.var, reference.var, rtol=1e-12, atol=1e-12)
    # Pendulum's observations are cos, sin and velocity: the running mean of cos/sin is in
    # [-1, 1] and the variance is positive.
    mean = trainer.policy.normalizer.mean
    assert torch.all(mean[:2].abs() <= 1) and torch.all(reference.var > 0)


def test_one_worker_reproduces_local_backend():
    local_config = TRPOConfig(**PENDULUM, n_envs=1)
    policy = _policy(local_config)
    local = make_collector(local_config, seed=11)
    remote = make_collector(local_config.replace(rollout_backend='ray', num_workers=1,
                                                 envs_per_worker=1), seed=11)
    assert isinstance(remote, RayCollector)
    g_local, g_ray = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    try:
        for _ in range(2):  # the second batch continues episodes and the generator stream
            a = local.collect(256, policy, g_local)
            b = remote.collect(256, policy, g_ray)
            for name in ('obs', 'actions', 'rewards', 'terminated', 'truncated', 'next_obs'):
                np.testing.assert_array_equal(getattr(a, name), getattr(b, name), name)
            assert a.episode_returns == b.episode_returns
            assert a.episode_lengths == b.episode_lengths
            assert torch.equal(g_local.get_state(), g_ray.get_state())
            assert a.obs_moments[2] == b.obs_moments[2]
            np.testing.assert_array_equal(a.obs_moments[0], b.obs_moments[0])
            policy.normalizer.merge(*a.obs_moments)
    finally:
        local.close()
        remote.close()


def test_one_worker_trainer_metrics_equal_local(tmp_path):
    rows = {}
    for name, changes in (('local', {}), ('ray', {'rollout_backend': 'ray', 'num_workers': 1})):
        config = TRPOConfig(**PENDULUM, total_steps=512, **changes)
        trainer = Trainer(config, tmp_path / name, tensorboard=False)
        trainer.train()
        trainer.close()
        rows[name] = read_metrics(tmp_path / name / 'metrics.csv')
    # Iteration 1 is bit-identical. After a TRPO step the learner's parameters are views into
    # one flat vector (vector_to_parameters) at unaligned offsets, while the worker holds
    # aligned copies, and CPU matmul kernels round the last bit differently: later iterations
    # agree to float32 rounding, not bit for bit.
    first_local, first_ray = rows['local'][0], rows['ray'][0]
    for key in first_local:
        if key not in TIMING:
            assert first_local[key] == first_ray[key] or (
                math.isnan(first_local[key]) and math.isnan(first_ray[key])), key
    for a, b in zip(rows['local'], rows['ray'], strict=True):
        for key in a:
            if key not in TIMING:
                assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-6, nan_ok=True), key


def test_killed_worker_is_restarted_and_its_share_collected_again():
    config = TRPOConfig(env_id='trpo_ros/KukaReach-v0', rollout_backend='ray', num_workers=2,
                        envs_per_worker=1, seed=5)
    policy = _policy(config)
    collector = RayCollector(config, seed=5)
    generator = torch.Generator().manual_seed(0)
    victim = collector.workers[0]
    n_steps = 8000  # a few seconds of collection per worker here
    try:
        killer = threading.Timer(0.5, lambda: ray.kill(victim, no_restart=True))
        killer.start()
        started = time.perf_counter()
        batch = collector.collect(n_steps, policy, generator)
        killer.join()
        assert time.perf_counter() - started > 0.5  # the kill came during collection
        assert batch.obs.shape == (n_steps, 2, 20) and batch.size == 2 * n_steps
        assert batch.lost_steps == n_steps  # the whole share of the dead worker
        assert collector.generations == [1, 0] and collector.workers[0] is not victim
        assert np.all(np.isfinite(batch.obs)) and np.abs(batch.obs[:, 0]).sum() > 0
        # Fresh envs are reseeded: the replacement does not replay the other worker.
        assert not np.array_equal(batch.obs[0, 0], batch.obs[0, 1])
        again = collector.collect(100, policy, generator)
        assert again.lost_steps == 0 and again.size == 200
    finally:
        collector.close()


def test_unreachable_cluster_fails_fast_with_config_error():
    with socket.socket() as s:  # a port with nothing listening
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    address = f'127.0.0.1:{port}'
    started = time.perf_counter()
    with pytest.raises(ConfigError, match=f'cannot reach the Ray cluster at {address}'):
        make_collector(TRPOConfig(rollout_backend='ray', ray_address=address), seed=0)
    assert time.perf_counter() - started < 5


def test_more_envs_than_cluster_cpus_is_a_config_error():
    config = TRPOConfig(env_id='Pendulum-v1', rollout_backend='ray', num_workers=3)
    started = time.perf_counter()
    with pytest.raises(ConfigError, match=r'has 2 CPUs .*needs 3'):
        RayCollector(config, seed=0)
    assert time.perf_counter() - started < 5  # more than the cluster has: no waiting
