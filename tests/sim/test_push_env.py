"""The push task in PyBullet: env checker, layout, determinism, randomization, rendering."""

from pathlib import Path

import gymnasium as gym
from gymnasium.utils.env_checker import check_env
import numpy as np
import pytest
from trpo_ros.robot.config import RobotConfigError
from trpo_ros.robot.kinematics import canonical_quaternion
from trpo_ros.robot.push_task import push_task
from trpo_ros.robot.reach_task import reach_task
import trpo_ros.sim
from trpo_ros.sim.push_env import PushEnv

pytestmark = pytest.mark.unit

PUSH_IDS = ['trpo_ros/KukaPush-v0', 'trpo_ros/PandaPush-v0']


@pytest.mark.parametrize('env_id', PUSH_IDS)
def test_check_env_and_layout(env_id: str) -> None:
    env = gym.make(env_id)
    try:
        check_env(env.unwrapped, skip_render_check=True)
        task = env.unwrapped.task
        obs, info = env.reset(seed=1)
        names = env.unwrapped.spec_info()['obs_names']
        assert len(names) == obs.shape[0] == 2 * 7 + 3 + 3 + 4 + 3
        column = {name: i for i, name in enumerate(names)}
        position, quat = env.unwrapped.object_pose()
        np.testing.assert_allclose(obs[[column[f'object_pos/{a}'] for a in 'xyz']], position,
                                   atol=1e-6)
        np.testing.assert_allclose(obs[[column[f'object_quat/{a}'] for a in 'xyzw']], quat,
                                   atol=1e-6)
        assert quat[3] >= 0 and np.linalg.norm(quat) == pytest.approx(1.0)
        # The cube rests on the table inside its start region; the goal lies on the table.
        size = env.unwrapped._object_size
        assert position[2] == pytest.approx(task.resting_z(size), abs=1e-6)
        assert np.all(position[:2] >= task.object_low) and np.all(position[:2] <= task.object_high)
        goal = env.unwrapped.goal
        assert goal[2] == pytest.approx(task.resting_z(size))
        assert info['distance'] == pytest.approx(np.linalg.norm(position - goal))
        action = env.action_space.high * 0.3
        obs, reward, terminated, truncated, info = env.step(action)
        expected, _ = task.outcome(env.unwrapped.ee_position(), env.unwrapped.object_pose()[0],
                                   env.unwrapped.goal, action)
        assert reward == pytest.approx(expected) and not terminated
        assert set(info) >= {'distance', 'ee_distance', 'is_success', 'reward_ee',
                             'reward_object', 'reward_action', 'reward_success',
                             'self_collision'}
        sources = env.unwrapped.spec_info()['sources']
        assert [s['type'] for s in sources] == ['sensor_msgs/JointState',
                                                'geometry_msgs/PoseStamped',
                                                'geometry_msgs/PointStamped']
        covered = [c for s in sources for c in s['columns']]
        assert sorted(covered + ['ee_pos/x', 'ee_pos/y', 'ee_pos/z']) == sorted(names)
    finally:
        env.close()


def test_seeded_runs_are_deterministic() -> None:
    def run() -> np.ndarray:
        env = gym.make('trpo_ros/KukaPush-v0')
        env.action_space.seed(5)
        rows = [env.reset(seed=5)[0]]
        for _ in range(60):
            rows.append(env.step(env.action_space.sample())[0])
        env.close()
        return np.array(rows)

    np.testing.assert_array_equal(run(), run())


def test_the_cube_is_randomized_per_episode_and_can_be_placed() -> None:
    env = PushEnv('kuka_push.yaml')
    try:
        sizes, masses = set(), set()
        for seed in range(6):
            env.reset(seed=seed)
            sizes.add(round(env._object_size, 6))
            import pybullet as p
            masses.add(round(p.getDynamicsInfo(env._object, -1,
                                               physicsClientId=env.robot.client)[0], 6))
        task = env.task
        assert len(sizes) == 6 and len(masses) == 6
        assert all(0.9 * task.object_size <= s <= 1.1 * task.object_size for s in sizes)
        assert all(0.5 * task.object_mass <= m <= 1.5 * task.object_mass for m in masses)
        _, info = env.reset(seed=0, options={'object': (0.5, 0.0), 'goal': (0.5, 0.0, 0.3)})
        position, _ = env.object_pose()
        np.testing.assert_allclose(position[:2], (0.5, 0.0), atol=1e-9)
        assert info['distance'] < 0.01 and info['is_success']  # the goal is dropped to the table
    finally:
        env.close()


def test_fixed_cube_when_no_ranges(tmp_path: Path) -> None:
    text = Path(trpo_ros.sim.find_sim_file('kuka_push.yaml')).read_text()
    for key in ('object_size_range', 'object_mass_range', 'object_friction_range'):
        text = '\n'.join(line for line in text.splitlines() if key not in line)
    fixed = tmp_path / 'fixed_push.yaml'
    fixed.write_text(text.replace('urdf: kuka_iiwa/model.urdf', 'urdf: kuka_iiwa/model.urdf'))
    env = trpo_ros.sim.make_env_from_yaml(fixed)
    try:
        assert isinstance(env.unwrapped, PushEnv)
        sizes = {env.reset(seed=s)[0].shape and env.unwrapped._object_size for s in range(3)}
        assert sizes == {0.05}
    finally:
        env.close()


def test_render_shows_cube_table_and_goal() -> None:
    env = PushEnv('kuka_push.yaml', render_mode='rgb_array')
    try:
        env.reset(seed=0)
        image = env.render().astype(int)
        r, g, b = image[..., 0], image[..., 1], image[..., 2]
        assert np.count_nonzero((r > 150) & (g < 100) & (b < 100)) > 20  # the red cube
        assert np.count_nonzero((g > 150) & (r < 100) & (b < 100)) > 10  # the green goal
    finally:
        env.close()


def test_task_kinds_are_checked() -> None:
    with pytest.raises(RobotConfigError, match="task type 'push' is not 'reach'"):
        reach_task('kuka_push.yaml')
    with pytest.raises(RobotConfigError, match="is not 'push'"):
        push_task('kuka_reach.yaml')
    with pytest.raises(RobotConfigError, match=r'goal_low is \(x, y\) on the table'):
        push_task('kuka_push.yaml', goal_low=(0.4, 0.0, 0.3))
    with pytest.raises(RobotConfigError, match='must be > 0'):
        push_task('kuka_push.yaml', object_mass=0.0)
    with pytest.raises(ValueError, match='not a quaternion'):
        canonical_quaternion([0.0, 0.0, 0.0, 0.0])
    np.testing.assert_allclose(canonical_quaternion([0.0, 0.0, 0.6, -0.8]), [0.0, 0.0, -0.6, 0.8])
    again = push_task(push_task('panda_push.yaml').robot_config())
    assert again.spec_info()['robot_config'] == push_task('panda_push.yaml').robot_config()


def test_push_point_lies_behind_the_cube_seen_from_the_goal() -> None:
    task = push_task('kuka_push.yaml')
    cube, goal = np.array([0.55, 0.0, 0.225]), np.array([0.70, 0.10, 0.225])
    point = task.push_point(cube, goal)
    away = (cube - goal)[:2] / np.linalg.norm((cube - goal)[:2])
    np.testing.assert_allclose(point[:2], cube[:2] + task.push_offset * away)
    assert point[2] == pytest.approx(cube[2] + task.push_height)
    # On the goal the direction is undefined: the point sits above the cube's centre.
    np.testing.assert_allclose(task.push_point(goal, goal), goal + [0.0, 0.0, task.push_height])
    # The reward terms: the end effector at the push point pays nothing for its distance.
    reward, info = task.outcome(point, cube, goal, np.zeros(task.robot.n_joints))
    assert info['ee_distance'] == pytest.approx(0.0)
    assert reward == pytest.approx(-task.object_goal_weight * np.linalg.norm(cube - goal) +
                                   task.action_term(np.zeros(task.robot.n_joints)))
    # success_bonus pays each step of success, and only those.
    rewarded = push_task('kuka_push.yaml', success_bonus=2.0)
    near, far = goal + [0.04, 0.0, 0.0], goal + [0.06, 0.0, 0.0]
    zero = np.zeros(task.robot.n_joints)
    for cube_at, bonus in ((near, 2.0), (far, 0.0)):
        plain, _ = task.outcome(point, cube_at, goal, zero)
        reward, info = rewarded.outcome(point, cube_at, goal, zero)
        assert reward - plain == pytest.approx(bonus) and info['reward_success'] == bonus
    # The YAML carries the reward settings, and an override wins over it.
    assert push_task('kuka_push.yaml', push_offset=0.1).push_offset == 0.1
    assert 'push_offset' in task.task_config()


def test_the_flange_cannot_reach_the_push_point_without_pushing_the_cube() -> None:
    # Why the reward pushes: the flange touches the cube before its frame reaches the push
    # point. Placed at the push point (arm posed by IK there), the flange overlaps the cube.
    import pybullet as p

    env = gym.make('trpo_ros/KukaPush-v0').unwrapped
    try:
        env.reset(seed=0, options={'object': (0.55, 0.0), 'goal': (0.72, 0.0, 0.0)})
        task, robot = env.task, env.robot
        cube = env.object_pose()[0]
        target = task.push_point(cube, env.goal)
        for _ in range(20):
            q = p.calculateInverseKinematics(robot.body, robot.ee_index, target.tolist(),
                                             p.getQuaternionFromEuler((np.pi, 0.0, 0.0)),
                                             physicsClientId=robot.client)
            env.set_joint_state(q[:robot.n_joints])
        assert np.linalg.norm(env.ee_position() - target) < 0.01
        p.performCollisionDetection(physicsClientId=robot.client)
        contacts = p.getClosestPoints(robot.body, env._object, 0.0, linkIndexA=robot.ee_index,
                                      physicsClientId=robot.client)
        assert contacts, 'the flange at the push point does not touch the cube'
    finally:
        env.close()
