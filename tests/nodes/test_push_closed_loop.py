"""
Closed loop for the push task: sim_node publishes the cube's pose, inference_node uses it.

The policy is `tests/data/kuka_push.onnx` (KukaPush-v0 after 3 M steps, seed 1, made by
`bench/push_model.py`; 40 % deterministic success): the loop over DDS must reach within 10
points of the success rate the same ONNX model has offline on the same episodes.
"""

from __future__ import annotations

from pathlib import Path

from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped
from nodes_helpers import ACTIVE_AT_ONCE
import numpy as np
import pytest
from trpo_ros.nodes.conversions import object_qos
from visualization_msgs.msg import MarkerArray

pytestmark = pytest.mark.integration

PUSH_MODEL = Path(__file__).resolve().parents[1] / 'data' / 'kuka_push.onnx'
EPISODES = 20
SEED = 700
# The committed model succeeds in 8 of these 20 episodes offline. (Issue 18 asks for a 60 %
# policy here; TRPO does not learn one yet: bench/results/push/.)
MIN_OFFLINE_SUCCESS = 0.35


@pytest.fixture(scope='module')
def offline() -> dict:
    """Success rate and mean final distance of the ONNX model in the sim, the same episodes."""
    from trpo_ros.nodes.sim_node import command_to_action, robot_to_simulate
    from trpo_ros.runtime import Policy
    from trpo_ros.sim import env_from_yaml

    policy = Policy.load(PUSH_MODEL)
    params = {'model_path': str(PUSH_MODEL), 'robot_yaml': '', 'env': ''}
    _, robot, kwargs = robot_to_simulate(params)  # what sim_node simulates for this model
    env = env_from_yaml(robot, **kwargs)
    task = env.unwrapped.task
    keep = [i for i, name in enumerate(task.obs_names) if name in policy.input_names]
    finals = []
    try:
        for episode in range(EPISODES):  # sim_node resets episode k with seed + k, too
            obs, _ = env.reset(seed=SEED + episode)
            done = False
            while not done:
                command = policy.act(obs[keep])
                positions = env.unwrapped.joint_state()[0]
                action = command_to_action(command, task.control_mode, positions,
                                           env.action_space.low, env.action_space.high)
                obs, _, terminated, truncated, info = env.step(action)
                done = terminated or truncated
            finals.append((info['distance'], info['is_success']))
    finally:
        env.close()
    return {'distance': float(np.mean([d for d, _ in finals])),
            'success_rate': float(np.mean([s for _, s in finals]))}


def test_push_policy_closes_the_loop_over_dds(offline, probe, node_process):
    assert offline['success_rate'] >= MIN_OFFLINE_SUCCESS, offline
    diags = probe.listen(DiagnosticArray, '/diagnostics')
    poses = probe.listen(PoseStamped, '/trpo/object_pose', object_qos())
    markers = probe.listen(MarkerArray, '/trpo/markers')
    model = str(PUSH_MODEL)
    sim = node_process('trpo_ros.nodes.sim_node', model_path=model, mode='lockstep', seed=SEED,
                       max_episodes=EPISODES, diagnostics_period=0.25)
    node_process('trpo_ros.nodes.inference_node', model_path=model, publish_on_state=True,
                 **ACTIVE_AT_ONCE)

    def finished() -> dict | None:
        for msg in diags:
            for status in msg.status:
                values = {kv.key: kv.value for kv in status.values}
                if status.name.startswith('sim_node') and int(values['episodes']) >= EPISODES:
                    return values
        return None

    values = probe.wait_for(finished, timeout=300.0, period=0.1)
    # The cube's pose came in the base frame, with a unit quaternion, w >= 0.
    pose = poses[-1].pose
    quat = np.array([pose.orientation.x, pose.orientation.y, pose.orientation.z,
                     pose.orientation.w])
    assert poses[-1].header.frame_id == 'world' and quat[3] >= 0
    assert np.linalg.norm(quat) == pytest.approx(1.0)
    assert any(m.ns == 'object' for msg in markers for m in msg.markers)
    # inference_node served the policy: it never waited for the object once serving.
    served = [s for msg in diags for s in msg.status if s.name.startswith('inference_node')]
    assert served and not any('waiting for an object pose' in s.message for s in served[-3:])
    # The same episodes as offline, so about the same outcome (the cube's pose is measured,
    # not remembered: it must arrive before the joint state that triggers the step).
    online = int(values['successes']) / EPISODES
    print(f"push closed loop: {online:.0%} success over DDS, {offline['success_rate']:.0%} "
          f"offline; final distance {float(values['mean_final_distance']):.4f} m, offline "
          f"{offline['distance']:.4f} m")
    assert abs(online - offline['success_rate']) <= 0.1 + 1e-9, (values, offline)
    assert sim.alive()


@pytest.mark.unit
def test_task_markers_show_the_cube_for_push_only():
    # One marker builder for sim_node and train_node's rviz preview.
    from builtin_interfaces.msg import Time
    from trpo_ros.nodes.conversions import task_markers
    from trpo_ros.sim import ReachEnv
    from trpo_ros.sim.push_env import PushEnv

    for env, expected in ((PushEnv('kuka_push.yaml'), ['goal', 'end_effector', 'object']),
                          (ReachEnv('kuka_reach.yaml'), ['goal', 'end_effector'])):
        try:
            env.reset(seed=3)
            markers = task_markers(env, 0.05, 0.1, 'world', Time())
            assert [m.ns for m in markers] == expected
            if expected[-1] == 'object':
                position, quat = env.object_pose()
                cube = markers[-1]
                assert cube.scale.x == pytest.approx(env.task.object_size)
                assert (cube.pose.position.x, cube.pose.orientation.w) == pytest.approx(
                    (position[0], quat[3]))
        finally:
            env.close()
