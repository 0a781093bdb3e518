import gymnasium as gym
import numpy as np
import pytest
import torch
from trpo_ros.core.config import TRPOConfig
from trpo_ros.core.networks import ActionScaler, GaussianActor, ObsNormalizer
from trpo_ros.core.rollout import make_vector_env, RolloutCollector, RolloutPolicy


@pytest.mark.unit
def test_rollout_policy_is_the_torch_policy():
    torch.manual_seed(0)
    normalizer = ObsNormalizer(5, clip=3.0)
    normalizer.update(np.random.default_rng(0).normal(2.0, 4.0, size=(500, 5)))
    actor = GaussianActor(5, 3, (16, 8), init_log_std=-0.3)
    scaler = ActionScaler(np.array([-1.0, -np.inf, 0.0]), np.array([3.0, np.inf, 0.5]))
    policy = RolloutPolicy(normalizer, actor, scaler)
    obs = np.random.default_rng(1).normal(0, 20, size=(64, 5)).astype(np.float32)
    with torch.no_grad():
        mean = actor(normalizer(torch.from_numpy(obs))).numpy()
        env = scaler(torch.from_numpy(mean)).numpy()
    np.testing.assert_allclose(policy.mean_action(obs), mean, atol=1e-5)
    np.testing.assert_allclose(policy.to_env(mean), env, atol=1e-5)
    u, env_action = policy.sample(obs, np.random.default_rng(2))
    np.testing.assert_allclose(env_action, scaler(torch.from_numpy(u)).numpy(), atol=1e-5)
    spread = (u - mean).std(axis=0)
    np.testing.assert_allclose(spread, actor.log_std.exp().detach().numpy(), rtol=0.35)


@pytest.mark.unit
def test_collector_counts_episodes_across_batches_and_keeps_final_obs():
    config = TRPOConfig(env_id='Pendulum-v1', n_envs=1)
    collector = RolloutCollector(make_vector_env(config), seed=0)
    space = gym.make('Pendulum-v1').action_space
    modules = (ObsNormalizer(3), GaussianActor(3, 1, (8,), 0.0),
               ActionScaler(space.low, space.high))
    generator = torch.Generator().manual_seed(0)
    first = collector.collect(150, *modules, generator)
    second = collector.collect(150, *modules, generator)
    collector.close()
    assert first.episode_lengths == [] and second.episode_lengths == [200]
    t = int(np.flatnonzero(second.truncated[:, 0])[0])
    assert t == 49
    # The stored next observation at the truncation is the final one, not the reset one.
    assert not np.allclose(second.next_obs[t, 0], second.obs[t + 1, 0])
    np.testing.assert_allclose(second.next_obs[t - 1, 0], second.obs[t, 0])
