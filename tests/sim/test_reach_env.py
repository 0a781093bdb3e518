"""ReachEnv: gymnasium API, determinism, reward, URDF loading, node helpers."""

import json
from pathlib import Path

import gymnasium as gym
from gymnasium.utils.env_checker import check_env
import numpy as np
import pybullet as p
import pybullet_data
import pytest
from trpo_ros.robot.kinematics import forward_kinematics, parse_joints
import trpo_ros.sim
from trpo_ros.sim import make_env_from_yaml, ReachEnv

pytestmark = pytest.mark.integration

DATA = Path(pybullet_data.getDataPath())
IDS = [i for i in trpo_ros.sim.ENV_IDS if 'Reach' in i]  # push: test_push_env.py


@pytest.fixture
def kuka():
    env = gym.make('trpo_ros/KukaReach-v0')
    yield env
    env.close()


@pytest.mark.parametrize('env_id', [*IDS, 'trpo_ros/Reach-v0'])
def test_check_env(env_id: str) -> None:
    kwargs = {'robot_yaml': 'panda_reach.yaml'} if env_id == 'trpo_ros/Reach-v0' else {}
    env = gym.make(env_id, **kwargs)
    check_env(env.unwrapped, skip_render_check=True)
    assert env.spec.max_episode_steps == 250 or env_id == 'trpo_ros/Reach-v0'
    env.close()


def test_reach_v0_is_time_limited() -> None:
    env = make_env_from_yaml('kuka_reach.yaml')
    env.reset(seed=0)
    zero = np.zeros(7)
    steps = 0
    truncated = False
    while not truncated:
        _, _, _, truncated, _ = env.step(zero)
        steps += 1
    assert steps == 250  # episode_steps of sim/kuka_reach.yaml
    env.close()


def _rollout(env: gym.Env, seed: int, actions: np.ndarray) -> np.ndarray:
    obs, _ = env.reset(seed=seed)
    rows = [obs]
    for a in actions:
        obs, reward, *_ = env.step(a)
        rows.append(np.append(obs, reward))
    return np.concatenate(rows)


@pytest.mark.parametrize('env_id', IDS)
def test_same_seed_same_trajectory(env_id: str) -> None:
    env = gym.make(env_id, mass_scale_range=(0.8, 1.2), damping_scale_range=(0.5, 2.0),
                   obs_noise_std=0.01, action_latency=1)
    actions = np.random.default_rng(0).uniform(env.action_space.low, env.action_space.high,
                                               size=(30, 7))
    first = _rollout(env, 3, actions)
    _rollout(env, 4, actions[::-1])
    again = _rollout(env, 3, actions)
    np.testing.assert_array_equal(first, again)
    env2 = gym.make(env_id, mass_scale_range=(0.8, 1.2), damping_scale_range=(0.5, 2.0),
                    obs_noise_std=0.01, action_latency=1)
    np.testing.assert_array_equal(first, _rollout(env2, 3, actions))
    env.close()
    env2.close()


@pytest.mark.parametrize('env_id', IDS)
def test_reward_components_sum(env_id: str) -> None:
    env = gym.make(env_id)
    obs, info = env.reset(seed=0)
    goal = obs[-3:]
    for _ in range(10):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        parts = info['reward_distance'] + info['reward_action'] + info['reward_velocity']
        assert reward == pytest.approx(parts, abs=1e-12)
        assert info['distance'] == pytest.approx(np.linalg.norm(obs[14:17] - goal), abs=1e-5)
        assert info['is_success'] == (info['distance'] < 0.05)
        assert info['self_collision'] is False
    env.close()


def test_spec_info_contract(kuka: gym.Env) -> None:
    info = kuka.unwrapped.spec_info()
    json.dumps(info)
    names = [f'lbr_iiwa_joint_{i}' for i in range(1, 8)]
    assert info['joint_names'] == names
    assert info['obs_names'] == ([f'joint_pos/{j}' for j in names]
                                 + [f'joint_vel/{j}' for j in names]
                                 + ['ee_pos/x', 'ee_pos/y', 'ee_pos/z',
                                    'goal/x', 'goal/y', 'goal/z'])
    assert len(info['obs_names']) == kuka.observation_space.shape[0] == 20
    assert info['control_mode'] == 'position_delta'
    assert info['control_rate_hz'] == 50.0
    assert info['ee_link'] == 'lbr_iiwa_link_7'
    assert info['success_threshold'] == 0.05
    assert info['base_position'] == [0.0, 0.0, 0.0]
    assert info['base_orientation'] == [0.0, 0.0, 0.0, 1.0]
    assert '<robot' in info['robot_description']
    obs, _ = kuka.reset(seed=1)
    assert obs.dtype == np.float32
    fk = forward_kinematics(info['fk_chain'], obs[:7], info['base_position'],
                            info['base_orientation'])
    assert np.allclose(fk, obs[14:17], atol=1e-5)


def test_node_helpers(kuka: gym.Env) -> None:
    env = kuka.unwrapped
    env.reset(seed=0)
    env.set_goal([0.5, 0.1, 0.4])
    assert np.allclose(env.goal, [0.5, 0.1, 0.4])
    q = np.array([0.1, 0.4, -0.2, -1.0, 0.3, 0.8, 0.0])
    env.set_joint_state(q)
    pos, vel, eff = env.joint_state()
    assert np.allclose(pos, q) and np.allclose(vel, 0) and eff.shape == (7,)
    info = env.spec_info()
    assert np.allclose(env.ee_position(), forward_kinematics(info['fk_chain'], q), atol=1e-6)
    obs, *_ = env.step(np.zeros(7))
    assert np.allclose(obs[-3:], [0.5, 0.1, 0.4])
    assert np.allclose(obs[:7], q, atol=0.01)  # zero delta holds the arm


@pytest.mark.parametrize(('urdf', 'joints'), [
    ('kuka_iiwa/model.urdf', None),
    ('franka_panda/panda.urdf', None),
])
def test_joint_order_and_limits_match_pybullet(urdf: str, joints: None) -> None:
    env = ReachEnv(urdf=urdf, self_collision=False, goal_low=(0.3, 0, 0.3),
                   goal_high=(0.3, 0, 0.3))
    robot = env.robot
    infos = [p.getJointInfo(robot.body, i, physicsClientId=robot.client)
             for i in range(p.getNumJoints(robot.body, physicsClientId=robot.client))]
    movable = [i for i in infos if i[2] in (p.JOINT_REVOLUTE, p.JOINT_PRISMATIC)]
    assert robot.joint_names == [i[1].decode() for i in movable]
    assert robot.joint_names == [j.name for j in parse_joints(robot.urdf_text) if j.movable]
    np.testing.assert_allclose(robot.lower, [i[8] for i in movable])
    np.testing.assert_allclose(robot.upper, [i[9] for i in movable])
    np.testing.assert_allclose(robot.effort_limits, [i[10] for i in movable])
    np.testing.assert_allclose(robot.velocity_limits, [i[11] for i in movable])
    env.close()


def test_panda_excludes_fingers() -> None:
    env = gym.make('trpo_ros/PandaReach-v0')
    info = env.unwrapped.spec_info()
    assert info['joint_names'] == [f'panda_joint{i}' for i in range(1, 8)]
    assert info['ee_link'] == 'panda_grasptarget'
    assert env.action_space.shape == (7,)
    env.close()


@pytest.mark.parametrize(('env_id', 'model'), [('trpo_ros/KukaReach-v0', 'kuka_iiwa/model.urdf'),
                                               ('trpo_ros/PandaReach-v0',
                                                'franka_panda/panda.urdf')])
def test_urdf_string_equals_path(env_id: str, model: str) -> None:
    text = (DATA / model).read_text()
    by_path = gym.make(env_id, urdf=str(DATA / model))
    by_text = gym.make(env_id, urdf=text)
    assert by_text.unwrapped.spec_info() == by_path.unwrapped.spec_info()
    actions = np.random.default_rng(1).uniform(by_path.action_space.low,
                                               by_path.action_space.high, size=(20, 7))
    np.testing.assert_allclose(_rollout(by_text, 5, actions), _rollout(by_path, 5, actions),
                               atol=1e-9)
    by_path.close()
    by_text.close()


def test_other_robot_via_urdf_override() -> None:
    # A different robot: YAML robot fields do not apply, so joints/ee come from the URDF.
    env = gym.make('trpo_ros/KukaReach-v0', urdf='franka_panda/panda.urdf',
                   joints=[f'panda_joint{i}' for i in range(1, 8)], ee_link='panda_hand')
    assert env.unwrapped.spec_info()['ee_link'] == 'panda_hand'
    env.reset(seed=0)
    env.step(env.action_space.sample())
    env.close()


@pytest.mark.parametrize('mode', ['position', 'position_delta', 'velocity', 'torque'])
def test_control_modes(mode: str) -> None:
    env = gym.make('trpo_ros/KukaReach-v0', control_mode=mode)
    robot = env.unwrapped.robot
    expected_high = {'position': robot.upper, 'position_delta': np.full(7, 0.05),
                     'velocity': robot.velocity_limits, 'torque': robot.effort_limits}[mode]
    np.testing.assert_allclose(env.action_space.high, expected_high)
    env.reset(seed=0)
    worst = 0.0
    for t in range(100):  # bang-bang at 10x the bounds: clipped, limits respected
        obs, *_ = env.step(env.action_space.high * (10 if (t // 25) % 2 == 0 else -10))
        assert np.all(np.isfinite(obs))
        q = obs[:7]
        worst = max(worst, float(np.max(q - robot.upper)), float(np.max(robot.lower - q)))
        assert np.all(np.abs(obs[7:14]) <= robot.velocity_limits + 1e-3)
    assert worst < 0.05
    env.close()


def test_position_delta_moves_by_delta() -> None:
    env = gym.make('trpo_ros/KukaReach-v0', init_joint_noise=0.0)
    obs, _ = env.reset(seed=0)
    for _ in range(5):
        obs2, *_ = env.step(np.full(7, 0.05))
    moved = obs2[:7] - obs[:7]  # 5 steps of +0.05 rad, give or take lag and momentum
    assert np.all(moved > 0.18) and np.all(moved < 0.32)
    env.close()


def test_self_collision_reported_and_terminates() -> None:
    env = gym.make('trpo_ros/KukaReach-v0', terminate_on_self_collision=True,
                   control_mode='position')
    env.reset(seed=0)
    colliding = np.array([-2.23, 0.71, 0.87, 0.48, -0.69, 2.08, 2.94])
    env.unwrapped.set_joint_state(colliding)
    _, _, terminated, _, info = env.step(colliding)
    assert info['self_collision'] is True and terminated is True
    pairs = env.unwrapped.robot.self_collision_pairs()
    assert ('lbr_iiwa_link_5', 'lbr_iiwa_link_7') in pairs
    env.close()


def test_goal_region_sampling_and_reset_options(kuka: gym.Env) -> None:
    env = kuka.unwrapped
    goals = np.array([env.reset(seed=s)[0][-3:] for s in range(20)])
    assert np.all(goals >= env.goal_low - 1e-6) and np.all(goals <= env.goal_high + 1e-6)
    obs, _ = env.reset(seed=0, options={'goal': [0.4, 0.0, 0.5]})
    assert np.allclose(obs[-3:], [0.4, 0.0, 0.5])


def test_render_and_gif(tmp_path: Path) -> None:
    env = gym.make('trpo_ros/KukaReach-v0', render_mode='rgb_array', render_width=64,
                   render_height=48)
    env.reset(seed=0)
    frames = [env.render()]
    for _ in range(3):
        env.step(env.action_space.sample())
        frames.append(env.render())
    assert frames[0].shape == (48, 64, 3) and frames[0].dtype == np.uint8
    assert frames[0].std() > 0
    trpo_ros.sim.save_gif(frames, tmp_path / 'reach.gif', fps=10)
    assert (tmp_path / 'reach.gif').stat().st_size > 0
    env.close()


def test_envs_coexist() -> None:
    a, b = gym.make('trpo_ros/KukaReach-v0'), gym.make('trpo_ros/KukaReach-v0')
    assert a.unwrapped.robot.client != b.unwrapped.robot.client
    oa, _ = a.reset(seed=0)
    b.reset(seed=0)
    for _ in range(5):
        b.step(b.action_space.high)
    oa2, _ = a.reset(seed=0)
    np.testing.assert_array_equal(oa, oa2)
    a.close()
    b.close()
