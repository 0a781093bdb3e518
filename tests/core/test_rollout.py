import gymnasium as gym
import numpy as np
import pytest
import torch
from trpo_ros.core.config import TRPOConfig
from trpo_ros.core.networks import ActionScaler, GaussianActor, ObsNormalizer
from trpo_ros.core.policy import PolicyModel, RolloutPolicy, RunningObsNormalizer
from trpo_ros.core.rollout import make_vector_env, RewardScaler, RolloutCollector


@pytest.mark.unit
def test_rollout_policy_is_the_torch_policy():
    torch.manual_seed(0)
    normalizer = ObsNormalizer(5, clip=3.0)
    normalizer.update(np.random.default_rng(0).normal(2.0, 4.0, size=(500, 5)))
    actor = GaussianActor(5, 3, (16, 8), init_log_std=-0.3)
    scaler = ActionScaler(np.array([-1.0, -np.inf, 0.0]), np.array([3.0, np.inf, 0.5]))
    policy = RolloutPolicy(actor, scaler)
    raw = np.random.default_rng(1).normal(0, 20, size=(64, 5)).astype(np.float32)
    obs = RunningObsNormalizer(normalizer)(raw)
    with torch.no_grad():
        np.testing.assert_allclose(obs, normalizer(torch.from_numpy(raw)).numpy(), atol=1e-5)
        mean = actor(torch.from_numpy(obs)).numpy()
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
    policy = PolicyModel(ObsNormalizer(3), GaussianActor(3, 1, (8,), 0.0),
                         ActionScaler(space.low, space.high))
    generator = torch.Generator().manual_seed(0)
    first = collector.collect(150, policy, generator)
    second = collector.collect(150, policy, generator)
    collector.close()
    assert first.episode_lengths == [] and second.episode_lengths == [200]
    t = int(np.flatnonzero(second.truncated[:, 0])[0])
    assert t == 49
    # The stored next observation at the truncation is the final one, not the reset one.
    assert not np.allclose(second.next_obs[t, 0], second.obs[t + 1, 0])
    np.testing.assert_allclose(second.next_obs[t - 1, 0], second.obs[t, 0])


class _Recorder(gym.Wrapper):
    """Keeps every raw observation the env returns (reset and step)."""

    def __init__(self, env: gym.Env, seen: list) -> None:
        super().__init__(env)
        self.seen = seen

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self.seen.append(obs)
        return obs, info

    def step(self, action):
        result = self.env.step(action)
        self.seen.append(result[0])
        return result


@pytest.mark.unit
def test_collector_normalizes_each_observation_with_statistics_that_include_it():
    seen = []
    envs = gym.vector.SyncVectorEnv(
        [lambda: _Recorder(gym.make('Pendulum-v1'), seen)],
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    collector = RolloutCollector(envs, seed=0)
    normalizer = ObsNormalizer(3)
    space = envs.single_action_space
    actor, scaler = GaussianActor(3, 1, (8,), 0.0), ActionScaler(space.low, space.high)
    generator = torch.Generator().manual_seed(0)
    policy = PolicyModel(normalizer, actor, scaler)
    first = collector.collect(250, policy, generator)
    # Pendulum truncates at 200: the recorder saw the final obs, then the reset obs.
    final, raw = seen[200], np.array(seen[:200] + seen[201:], np.float64)
    assert len(raw) == 251 and first.truncated[199, 0]
    for t in (0, 1, 5, 150, 249):  # obs[t] is raw[t] normalized by the moments of raw[:t+1]
        reference = ObsNormalizer(3)
        reference.update(raw[:t + 1])
        expected = reference(torch.from_numpy(raw[t:t + 1]))[0].numpy()
        np.testing.assert_allclose(first.obs[t, 0], expected, rtol=1e-4, atol=1e-4)
    # The truncated step keeps the final observation, normalized like its successor.
    reference = ObsNormalizer(3)
    reference.update(raw[:201])
    expected = reference(torch.from_numpy(final[None]))[0].numpy()
    np.testing.assert_allclose(first.next_obs[199, 0], expected, rtol=1e-4, atol=1e-4)
    # The moments are those of every raw observation (reset ones included, final ones not);
    # the caller's normalizer is untouched until the learner merges them.
    mean, var, count = first.obs_moments
    assert count == 251 and float(normalizer.count) == pytest.approx(1e-4)
    np.testing.assert_allclose(mean, raw.mean(0), rtol=1e-9)
    np.testing.assert_allclose(var, raw.var(0), rtol=1e-9)
    normalizer.merge(*first.obs_moments)
    second = collector.collect(10, policy, generator)
    assert second.obs_moments[2] == 10  # the reset observation is counted only once
    np.testing.assert_allclose(second.obs[0, 0], first.next_obs[-1, 0], rtol=1e-5, atol=1e-5)
    collector.close()


@pytest.mark.unit
def test_reward_scaler_updates_every_step_clips_and_restarts_at_terminations():
    scaler = RewardScaler(n_envs=1, gamma=0.5, clip=10.0)
    rewards = np.ones((3, 1))
    terminated = np.array([[False], [True], [False]])
    scaled = scaler.scale(rewards, terminated)[:, 0]
    # Discounted returns 1, 1.5, then 1 again (restarted after the termination).
    assert scaled[0] == 10.0  # one return: variance ~0, so the clip acts
    assert scaled[1] == pytest.approx(1 / np.std([1, 1.5]), rel=1e-3)
    assert scaled[2] == pytest.approx(1 / np.std([1, 1.5, 1]), rel=1e-3)
    # Truncations are not terminations: the return keeps accumulating across them.
    scaler = RewardScaler(n_envs=1, gamma=0.5, clip=10.0)
    scaled = scaler.scale(rewards, np.zeros((3, 1), bool))[:, 0]
    assert scaled[2] == pytest.approx(1 / np.std([1, 1.5, 1.75]), rel=1e-3)
