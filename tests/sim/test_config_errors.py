"""Bad robot/task input fails at construction with a RobotConfigError naming the culprit."""

from pathlib import Path

import gymnasium as gym
import pytest
import trpo_ros.sim  # noqa: F401 - registers the ids
from trpo_ros.sim import find_sim_file, load_robot_yaml, ReachEnv, RobotConfigError

pytestmark = pytest.mark.unit

NO_JOINTS = """<robot name="brick"><link name="base"/><link name="lid"/>
<joint name="glue" type="fixed"><parent link="base"/><child link="lid"/></joint></robot>"""


def test_missing_urdf_file() -> None:
    with pytest.raises(RobotConfigError, match='no/such/robot.urdf'):
        gym.make('trpo_ros/KukaReach-v0', urdf='no/such/robot.urdf')


def test_urdf_without_movable_joints() -> None:
    with pytest.raises(RobotConfigError, match='no movable'):
        ReachEnv(urdf=NO_JOINTS)


def test_unknown_ee_link() -> None:
    with pytest.raises(RobotConfigError, match='tool_flange_9'):
        gym.make('trpo_ros/KukaReach-v0', ee_link='tool_flange_9')


def test_unknown_joint() -> None:
    with pytest.raises(RobotConfigError, match='elbow_99'):
        gym.make('trpo_ros/KukaReach-v0', joints=['lbr_iiwa_joint_1', 'elbow_99'])


def test_fixed_joint_is_not_controllable() -> None:
    with pytest.raises(RobotConfigError, match='panda_joint8'):
        gym.make('trpo_ros/PandaReach-v0', joints=['panda_joint1', 'panda_joint8'])


@pytest.mark.parametrize('mode', ['effort', 'POSITION', ''])
def test_unknown_control_mode(mode: str) -> None:
    with pytest.raises(RobotConfigError, match='control_mode'):
        gym.make('trpo_ros/KukaReach-v0', control_mode=mode)


def test_bad_limit_override() -> None:
    with pytest.raises(RobotConfigError, match='lbr_iiwa_joint_2'):
        gym.make('trpo_ros/KukaReach-v0', limits={'lbr_iiwa_joint_2': {'lower': 1, 'upper': 0}})


def test_missing_yaml_and_unknown_key(tmp_path: Path) -> None:
    with pytest.raises(RobotConfigError, match='nope.yaml'):
        find_sim_file('nope.yaml')
    bad = tmp_path / 'bad.yaml'
    bad.write_text('robot: {urdf: kuka_iiwa/model.urdf, gripper: yes}\n')
    with pytest.raises(RobotConfigError, match='gripper'):
        load_robot_yaml(bad)


def test_sim_yamls_found_in_checkout() -> None:
    for name in ('kuka_reach.yaml', 'panda_reach.yaml'):
        assert find_sim_file(name).is_file()


def test_user_yaml_adds_a_robot(tmp_path: Path) -> None:
    yaml_path = tmp_path / 'my_arm.yaml'
    yaml_path.write_text(
        'robot:\n  urdf: franka_panda/panda.urdf\n'
        '  joints: [panda_joint1, panda_joint2, panda_joint3, panda_joint4]\n'
        '  ee_link: panda_link5\n'
        'task:\n  control_mode: velocity\n  episode_steps: 7\n'
        '  goal_low: [0.3, -0.1, 0.3]\n  goal_high: [0.4, 0.1, 0.5]\n')
    env = trpo_ros.sim.make_env_from_yaml(yaml_path)
    assert env.action_space.shape == (4,)
    env.reset(seed=0)
    steps, truncated = 0, False
    while not truncated:
        *_, truncated, _ = env.step(env.action_space.sample())
        steps += 1
    assert steps == 7
    env.close()


def test_unreadable_yaml_files_name_themselves(tmp_path: Path) -> None:
    from trpo_ros.core.config import ConfigError, load_config

    broken, listed = tmp_path / 'broken.yaml', tmp_path / 'listed.yaml'
    broken.write_text('robot: [unclosed\n')
    listed.write_text('- a\n- b\n')
    for path, message in ((broken, 'is not valid YAML'), (listed, 'must hold a mapping')):
        with pytest.raises(RobotConfigError, match=f'robot/task YAML {path}.*{message}'):
            load_robot_yaml(path)
        with pytest.raises(ConfigError, match=f'config file {path}.*{message}'):
            load_config(path)
