"""RosReachEnv against sim_node in another process: training, parity with ReachEnv, faults."""

from __future__ import annotations

import signal
import time

import numpy as np
import pytest
import trpo_ros.nodes.ros_env  # noqa: F401 - registers trpo_ros/RosReach-v0
from trpo_ros.nodes.ros_env import RosEnvError, RosEnvTimeout, RosReachEnv, SERVER_PARAMETERS

pytestmark = pytest.mark.integration

MODULE = 'trpo_ros.nodes.sim_node'


def start_sim(node_process, mode='lockstep', **params):
    return node_process(MODULE, **{**SERVER_PARAMETERS, 'mode': mode, **params})


def record_used_states(env):
    """Wrap env._use to log (arrival count, stamp ns) of every state the env consumes."""
    used = []
    original = env._use

    def use(entry):
        original(entry)
        used.append(env._used[:2])

    env._use = use
    return used


def assert_strictly_newer(used):
    counts = [c for c, _ in used]
    stamps = [s for _, s in used]
    assert all(b > a for a, b in zip(counts, counts[1:])), 'a state was used twice'
    assert all(b > a for a, b in zip(stamps, stamps[1:])), 'state stamps not increasing'


def test_lazy_spec_info_without_ros():
    import gymnasium as gym

    env = gym.make('trpo_ros/RosReach-v0')
    sim = gym.make('trpo_ros/KukaReach-v0')
    try:
        assert not env.unwrapped.connected
        info, sim_info = env.unwrapped.spec_info(), sim.unwrapped.spec_info()
        assert info == sim_info
        assert env.action_space == sim.action_space
        assert env.observation_space == sim.observation_space
        assert env.spec.max_episode_steps == 250  # the YAML's episode_steps
        assert env.unwrapped.episode_steps == 250
        with pytest.raises(RosEnvError, match='before reset'):
            env.unwrapped.step(np.zeros(7))
    finally:
        env.close()  # never connected: nothing to do
        sim.close()


def test_safety_limits_before_publishing():
    env = RosReachEnv(max_joint_velocity=1.0, control_rate_hz=50.0,
                      workspace=((0.3, -0.4, 0.2), (0.75, 0.4, 0.75)))
    try:
        from trpo_ros.robot import kinematics

        rng = np.random.default_rng(0)
        for _ in range(20):  # the env's cached FK is the numpy reference FK
            q = rng.uniform(env.lower, env.upper)
            reference = kinematics.forward_kinematics(env._chain, q, *env._base,
                                                      joint_names=env.joint_names)
            np.testing.assert_allclose(env._fk(q), reference, rtol=0, atol=1e-12)
        q = env.home.copy()
        env._q = q
        target, capped = env.safe_target(q + 0.5)
        assert capped and np.allclose(np.abs(target - q), 1.0 / 50.0)
        target, capped = env.safe_target(q + 0.01)
        assert not capped and np.allclose(target, q + 0.01)
        away = q.copy()
        away[1] -= 0.02  # shoulder up: ee moves back/up, out of this tight box
        assert np.linalg.norm(env._fk(away) - env._fk(q)) > 1e-3
        env.workspace = np.array([env._fk(q) - 1e-4, env._fk(q) + 1e-4])
        target, _ = env.safe_target(away)
        assert np.array_equal(target, q) and env.workspace_holds == 1
    finally:
        env.close()


def test_train_over_ros_lockstep(node_process, tmp_path):
    from trpo_ros.core.config import TRPOConfig
    from trpo_ros.core.trainer import Trainer
    from trpo_ros.export import export_onnx

    start_sim(node_process, seed=5)
    # 50-step episodes: several episode ends and resets over ROS in each batch.
    config = TRPOConfig(env_id='trpo_ros/RosReach-v0', n_steps=256, total_steps=512,
                        env_kwargs={'max_episode_steps': 50}, eval_every=0,
                        checkpoint_every=1000, seed=0)
    started = time.monotonic()
    trainer = Trainer(config, tmp_path / 'run', tensorboard=False, exporter=export_onnx)
    try:
        assert not trainer.eval_env.unwrapped.connected  # lazy: never fights the rollout env
        env = trainer.collector.envs.envs[0].unwrapped
        assert env.connected
        used = record_used_states(env)
        batches = []
        collect = trainer.collector.collect
        trainer.collector.collect = lambda *a, **k: batches.append(collect(*a, **k)) or \
            batches[-1]
        rows = []
        trainer.train(callback=lambda _, row: rows.append(row))
        assert len(batches) == 2 and len(rows) == 2
        for batch in batches:
            for array in (batch.obs, batch.next_obs, batch.rewards, batch.actions):
                assert np.isfinite(array).all()
            assert len(batch.episode_returns) >= 4
            assert np.isfinite(batch.episode_returns).all()
        assert all(np.isfinite(row['train/kl']) for row in rows)
        assert len(used) >= 512
        assert_strictly_newer(used)
        assert (tmp_path / 'run' / 'policy.onnx').is_file()

        # Observations equal the PyBullet env's for the same joint state and goal.
        import gymnasium as gym

        local = gym.make('trpo_ros/KukaReach-v0').unwrapped
        try:
            env.reset(seed=3)
            for _ in range(5):
                obs, reward, _, _, info = env.step(env.action_space.sample())
                q, qd, _ = env.joint_state()
                local.set_joint_state(q, qd)
                local.set_goal(env.goal)
                np.testing.assert_allclose(obs, local._observe(), rtol=0, atol=2e-6)
                assert info['late_states'] == 0 and info['workspace_holds'] == 0
                parts = info['reward_distance'] + info['reward_action'] + info['reward_velocity']
                assert reward == pytest.approx(parts)
                assert info['distance'] == pytest.approx(
                    float(np.linalg.norm(local.ee_position() - env.goal)), abs=1e-6)
        finally:
            local.close()
        assert_strictly_newer(used)
    finally:
        trainer.close()
    assert not env.connected and not trainer.eval_env.unwrapped.connected
    assert time.monotonic() - started < 60


def test_faults_timeout_leaves_hold(node_process, probe):
    sim = start_sim(node_process)
    env = RosReachEnv(state_timeout=0.5)
    try:
        env.reset(seed=0)
        used = record_used_states(env)
        for _ in range(5):
            env.step(env.action_space.high)
        assert_strictly_newer(used)
        probe.wait_for(lambda: len(probe.commands) >= 3)
        sim.proc.send_signal(signal.SIGSTOP)
        try:
            last_q = env.joint_state()[0]
            started = time.monotonic()
            with pytest.raises(RosEnvTimeout, match='no fresh JointState'):
                env.step(env.action_space.high)
            waited = time.monotonic() - started
            assert 0.45 <= waited < 5.0, waited  # the timeout, not a hang (loose: loaded CI)
            # The last command on the topic is the hold command (the measured positions).
            probe.wait_for(lambda: np.array_equal(probe.commands[-1][1], last_q))
            time.sleep(0.2)
            with probe.lock:
                assert np.array_equal(probe.commands[-1][1], last_q)
            env.close()
            probe.wait_for(lambda: np.array_equal(probe.commands[-1][1], last_q))
        finally:
            sim.proc.send_signal(signal.SIGCONT)
    finally:
        env.close()


def test_keyboard_interrupt_publishes_hold(node_process, probe):
    start_sim(node_process)
    env = RosReachEnv()
    try:
        env.reset(seed=1)
        env.step(env.action_space.high)

        def interrupted(*_):
            raise KeyboardInterrupt

        env._exchange = interrupted
        with pytest.raises(KeyboardInterrupt):
            env.step(env.action_space.high)
        q = env.joint_state()[0]
        probe.wait_for(lambda: np.array_equal(probe.commands[-1][1], q))
    finally:
        env.close()


def test_joint_mismatch_is_refused(node_process):
    start_sim(node_process)
    env = RosReachEnv(robot_yaml='panda_reach.yaml', connect_timeout=10.0)
    try:
        with pytest.raises(RosEnvError, match='panda_joint1') as excinfo:
            env.reset()
        assert 'lbr_iiwa_joint_1' in str(excinfo.value)  # names what the robot publishes
        assert not env.connected
    finally:
        env.close()


def test_home_without_reset_service_and_realtime(node_process):
    start_sim(node_process, mode='realtime')
    env = RosReachEnv(timing='realtime', reset_service='', home_tolerance=0.05,
                      state_timeout=1.0)
    try:
        obs, _ = env.reset(seed=0)
        assert not env._use_service
        assert np.max(np.abs(obs[:7] - env.home)) <= 0.05
        used = record_used_states(env)
        started = time.monotonic()
        for _ in range(25):
            _, _, _, _, info = env.step(np.zeros(7))
        elapsed = time.monotonic() - started
        assert 0.4 < elapsed < 1.5, elapsed  # 25 steps at 50 Hz
        assert_strictly_newer(used)
        assert isinstance(info['late_states'], int) and info['late_states'] <= 25
    finally:
        env.close()
