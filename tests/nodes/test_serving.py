"""PolicyServer without ROS: fail closed, hold, goals, URDF limits, hot swap."""

from __future__ import annotations

from nodes_helpers import JOINTS, write_linear_policy
import numpy as np
import pytest
from trpo_ros.runtime import PolicyError
from trpo_ros.serving import PolicyServer, ServedModel, WAITING_FOR_GOAL

pytestmark = pytest.mark.unit


def urdf(lower: float, upper: float) -> str:
    joints = ''.join(f'<joint name="{j}" type="revolute"><parent link="l{i}"/>'
                     f'<child link="l{i + 1}"/><limit lower="{lower}" upper="{upper}" '
                     'velocity="1" effort="1"/></joint>' for i, j in enumerate(JOINTS))
    links = ''.join(f'<link name="l{i}"/>' for i in range(len(JOINTS) + 1))
    return f'<robot name="r">{links}{joints}</robot>'


def test_server_decisions(tmp_path):
    server = PolicyServer()
    server.configure(ServedModel(str(write_linear_policy(tmp_path / 'p.onnx'))))
    zeros = [0.0, 0.0, 0.0]
    step = server.step(['a1'], [0.1], [0.0], 0.0)  # incomplete before any complete state
    assert step.command is None and 'lacks joint(s) a2, a3' in step.fault and step.rejected
    step = server.step(JOINTS, [0.1, 0.2, 0.3], zeros, 0.0)  # no goal: hold the pose, WARN
    assert step.fault == WAITING_FOR_GOAL and step.severity == 'warn'
    assert np.allclose(step.command, [0.1, 0.2, 0.3])
    assert server.set_goal(lambda: np.array([0.4, 0.0, 0.5])) == ''
    step = server.step(JOINTS, [0.1, 0.2, 0.3], zeros, 0.0)
    assert step.fault == '' and step.command.shape == (3,)
    step = server.step(JOINTS, [0.5, float('nan'), 0.5], zeros, 0.0)  # hold last good pose
    assert 'NaN' in step.fault and np.allclose(step.command, [0.1, 0.2, 0.3])
    assert server.set_description(urdf(-0.5, 0.5)).startswith('robot_description has tighter')
    assert server.step(JOINTS, zeros, zeros, 0.0).command is None  # refused: send nothing
    server.accept_tighter_limits = True
    assert server.check_limits() == ''
    assert np.all(np.abs(server.step(JOINTS, zeros, zeros, 0.0).command) <= 0.5)
    other_path = write_linear_policy(tmp_path / 'o.onnx', joint_names=['b1', 'b2', 'b3'])
    other = ServedModel(str(other_path))
    with pytest.raises(PolicyError, match='controls joints'):
        server.swap(other)
    server.activate()  # fail closed again
    assert server.hold('stale', 0.0).command is None


def test_object_pose_source_with_its_own_staleness(tmp_path):
    from trpo_ros.robot.observation import ObservationError, validate_object_pose
    from trpo_ros.serving import WAITING_FOR_OBJECT

    server = PolicyServer()
    server.configure(ServedModel(str(write_linear_policy(tmp_path / 'push.onnx',
                                                         with_object=True))))
    server.object_timeout = 0.5
    assert server.request_mode('active')[0]
    pose, zeros = [0.1, 0.2, 0.3], [0.0, 0.0, 0.0]
    server.set_goal(lambda: np.array([0.5, 0.0, 0.2]))
    step = server.step(JOINTS, pose, zeros, 0.0, now=10.0)  # no object yet: hold, WARN
    assert step.fault == WAITING_FOR_OBJECT and step.severity == 'warn'
    assert np.allclose(step.command, pose)
    assert server.set_object_pose(lambda: validate_object_pose((0.5, 0.0, 0.2),
                                                               (0, 0, 0, -2.0)), 10.0) == ''
    assert server.object_pose[6] == 1.0  # unit quaternion, w >= 0
    step = server.step(JOINTS, pose, zeros, 0.0, now=10.4)  # fresh: the policy commands
    assert step.fault == '' and not np.allclose(step.command, pose)
    obs = server.model.layout.obs
    assert np.allclose(obs[6:13], [0.5, 0.0, 0.2, 0, 0, 0, 1])  # the object, w >= 0
    assert np.allclose(obs[13:], [0.5, 0.0, 0.2])  # the goal
    step = server.step(JOINTS, pose, zeros, 0.0, now=10.6)  # 0.6 s old: stale, hold, ERROR
    assert 'object pose is stale' in step.fault and step.severity == 'error'
    assert np.allclose(step.command, pose)
    # A bad pose is rejected and holds until a good one comes; the other inputs stay.
    for bad in [((float('nan'), 0, 0), (0, 0, 0, 1)), ((0, 0, 0), (0, 0, 0, 0))]:
        error = server.set_object_pose(lambda bad=bad: validate_object_pose(*bad), 11.0)
        assert error.startswith('rejected object pose')
        step = server.step(JOINTS, pose, zeros, 0.0, now=11.0)
        assert step.fault == error and np.allclose(step.command, pose)
    with pytest.raises(ObservationError, match='3 and 4'):
        validate_object_pose((0, 0), (0, 0, 0, 1))
    server.set_object_pose(lambda: validate_object_pose((0.5, 0, 0.2), (0, 0, 0, 1)), 12.0)
    assert server.step(JOINTS, pose, zeros, 0.0, now=12.1).fault == ''
