"""The robot spec and the reach task read from YAML and URDF, checked against PyBullet."""

from pathlib import Path

import numpy as np
import pybullet as p
import pybullet_data
import pytest
from trpo_ros.robot.config import load_robot_yaml, RobotConfigError
from trpo_ros.robot.kinematics import parse_joints
from trpo_ros.robot.push_task import push_task
from trpo_ros.robot.reach_task import reach_task
from trpo_ros.robot.spec import DEFAULT_EFFORT_LIMIT, DEFAULT_VELOCITY_LIMIT, robot_spec
from trpo_ros.sim import ReachEnv

pytestmark = pytest.mark.unit

# Serial arms, a tree with fingers, a quadruped and a mobile base: PyBullet's joint order.
URDFS = ['kuka_iiwa/model.urdf', 'franka_panda/panda.urdf', 'xarm/xarm6_robot.urdf',
         'a1/a1.urdf', 'laikago/laikago_toes.urdf', 'racecar/racecar.urdf', 'r2d2.urdf']


def pybullet_movable_joints(urdf: str) -> list[tuple[str, float, float, float, float]]:
    """(name, lower, upper, velocity, effort) of PyBullet's movable joints, index order."""
    cid = p.connect(p.DIRECT)
    try:
        p.setAdditionalSearchPath(pybullet_data.getDataPath(), physicsClientId=cid)
        body = p.loadURDF(urdf, useFixedBase=True, physicsClientId=cid)
        rows = []
        for i in range(p.getNumJoints(body, physicsClientId=cid)):
            info = p.getJointInfo(body, i, physicsClientId=cid)
            if info[2] in (p.JOINT_REVOLUTE, p.JOINT_PRISMATIC):
                rows.append((info[1].decode(), info[8], info[9], info[11], info[10]))
        return rows
    finally:
        p.disconnect(cid)


@pytest.mark.parametrize('urdf', URDFS)
def test_default_joints_and_limits_match_pybullet(urdf: str) -> None:
    rows = pybullet_movable_joints(urdf)
    spec = robot_spec({'urdf': urdf})
    assert list(spec.joint_names) == [r[0] for r in rows]
    continuous = {j.name for j in parse_joints(spec.urdf_text) if j.type == 'continuous'}
    for i, (name, lower, upper, velocity, effort) in enumerate(rows):
        if name in continuous:  # the spec's convention: +-pi
            assert (spec.lower[i], spec.upper[i]) == (-np.pi, np.pi)
        else:
            assert (spec.lower[i], spec.upper[i]) == pytest.approx((lower, upper))
        assert spec.velocity_limits[i] == pytest.approx(velocity or DEFAULT_VELOCITY_LIMIT)
        assert spec.effort_limits[i] == pytest.approx(effort or DEFAULT_EFFORT_LIMIT)


def test_spec_validation_names_the_problem() -> None:
    kuka = {'urdf': 'kuka_iiwa/model.urdf'}
    cases = [({'joints': ['nope']}, "joint 'nope' not in URDF"),
             ({'ee_link': 'nope'}, "end-effector link 'nope' not in URDF"),
             ({'home': [0.0] * 3}, 'home has 3 values'),
             ({'home': [9.0] * 7}, 'outside the joint limits'),
             ({'limits': {'lbr_iiwa_joint_1': {'lower': 1.0, 'upper': 0.0}}}, 'not below'),
             ({'limits': {'lbr_iiwa_joint_1': {'speed': 1.0}}}, 'unknown limit keys'),
             ({'limits': {'other': {'lower': 0.0}}}, 'not controlled')]
    for override, message in cases:
        with pytest.raises(RobotConfigError, match=message):
            robot_spec({**kuka, **override})
    with pytest.raises(RobotConfigError, match='URDF file not found'):
        robot_spec({'urdf': 'no/such.urdf'})


def test_other_urdf_keeps_only_fitting_yaml_fields() -> None:
    panda = robot_spec({'urdf': 'kuka_iiwa/model.urdf', 'ee_link': 'lbr_iiwa_link_7',
                        'home': [0.1] * 7, 'base_position': [0, 0, 0.5]},
                       urdf='franka_panda/panda.urdf')
    assert panda.ee_link != 'lbr_iiwa_link_7' and panda.base_position == (0.0, 0.0, 0.5)
    assert np.all(panda.home == np.clip(0.0, panda.lower, panda.upper))


@pytest.mark.parametrize('yaml_name', ['kuka_reach.yaml', 'panda_reach.yaml'])
def test_task_is_the_sim_envs_task(yaml_name: str) -> None:
    task = reach_task(yaml_name)
    env = ReachEnv(robot_yaml=yaml_name)
    try:
        assert task.spec_info() == env.spec_info()
        assert (env.action_space, env.observation_space) == task.spaces()
        obs, _ = env.reset(seed=3)
        action = env.action_space.high * 0.5
        obs, reward, _, _, info = env.step(action)
        q, qd, _ = env.joint_state()
        expected, terms = task.outcome(env.ee_position(), env.goal, action, qd)
        assert reward == expected and info['distance'] == terms['distance']
        assert np.array_equal(obs, task.observation(q, qd, env.ee_position(), env.goal))
    finally:
        env.close()


def test_robot_config_round_trips_without_files(tmp_path: Path) -> None:
    task = reach_task('panda_reach.yaml')
    again = reach_task(task.robot_config())
    assert again.spec_info()['robot_config'] == task.spec_info()['robot_config']
    assert again.robot.joint_names == task.robot.joint_names
    with pytest.raises(RobotConfigError, match='unknown task fields'):
        reach_task('kuka_reach.yaml', episode_length=3)
    with pytest.raises(RobotConfigError, match='max_delta must be > 0'):
        reach_task('kuka_reach.yaml', max_delta=0.0)


def test_task_keys_are_checked_for_the_task_type() -> None:
    # The keys depend on the type, so the task module checks them: a typo, or a push key in
    # a reach YAML, names the key and the allowed ones; a push YAML's keys load as push.
    reach_yaml = load_robot_yaml('kuka_reach.yaml')
    cases = [(reach_task, {'sucess_threshold': 0.05}, "reach task keys \\['sucess_threshold'\\]"),
             (reach_task, {'push_offset': 0.06}, "reach task keys \\['push_offset'\\]"),
             (push_task, {'type': 'push', 'push_ofset': 0.06},
              "push task keys \\['push_ofset'\\]")]
    for make, extra, message in cases:
        config = {'robot': reach_yaml['robot'], 'task': {**reach_yaml['task'], **extra}}
        with pytest.raises(RobotConfigError, match=message) as error:
            make(config)
        assert 'allowed:' in str(error.value) and 'episode_steps' in str(error.value)
    assert push_task('kuka_push.yaml').push_offset == pytest.approx(0.06)
    with pytest.raises(RobotConfigError, match='unknown robot keys'):
        load_robot_yaml({'robot': {**reach_yaml['robot'], 'jionts': []}, 'task': {}})
