"""sim_node in its own process: the interface of a ros2_control arm, lockstep stepping."""

from __future__ import annotations

import signal
import time

from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PointStamped
import numpy as np
import pytest
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray, String
from std_srvs.srv import Trigger
from trpo_ros.nodes.conversions import command_qos, latched_qos, state_qos
from visualization_msgs.msg import MarkerArray

pytestmark = pytest.mark.integration

MODULE = 'trpo_ros.nodes.sim_node'
KUKA_JOINTS = [f'lbr_iiwa_joint_{i}' for i in range(1, 8)]


def episode_diag(diags):
    return [s for m in diags for s in m.status if 'episodes' in s.name]


def values(status):
    return {kv.key: kv.value for kv in status.values}


def test_lockstep_interface(probe, node_process):
    node_process(MODULE, mode='lockstep', seed=3, lockstep_kick=0.3, episode_steps=50)
    states = probe.listen(JointState, '/joint_states', state_qos())
    goals = probe.listen(PointStamped, '/trpo/goal', latched_qos())
    descriptions = probe.listen(String, '/robot_description', latched_qos())
    markers = probe.listen(MarkerArray, '/trpo/markers')
    diags = probe.listen(DiagnosticArray, '/diagnostics')
    commands = probe.publisher(Float64MultiArray, '/forward_position_controller/commands',
                               command_qos())

    probe.wait_for(lambda: states and goals and descriptions and markers, timeout=15.0)
    assert '<robot' in descriptions[0].data
    assert goals[0].header.frame_id == 'world'
    assert list(states[-1].name) == KUKA_JOINTS
    assert {m.header.frame_id for m in markers[-1].markers} == {'world'}
    assert len(markers[-1].markers) == 2
    probe.wait_subscribers(commands)

    # One command -> exactly one step -> one new state; an absolute target is approached.
    start = np.array(states[-1].position)
    target = start.copy()
    target[0] += 0.03
    with probe.lock:
        states.clear()
    commands.publish(Float64MultiArray(data=target.tolist()))
    probe.wait_for(lambda: states)
    moved = np.array(states[0].position)
    assert abs(moved[0] - target[0]) < abs(start[0] - target[0])
    time.sleep(0.1)
    assert len(states) == 1  # lockstep (the idle kick is 0.3 s away)

    # A wrong-sized command is ignored (no step), the node keeps running.
    commands.publish(Float64MultiArray(data=[0.0, 1.0]))
    time.sleep(0.1)
    assert len(states) == 1

    # Finish the first episode (50 steps): episode statistics and a new goal.
    first_goal = goals[-1].point
    for _ in range(60):
        with probe.lock:
            n = len(states)
            position = list(states[-1].position)
        commands.publish(Float64MultiArray(data=position))
        probe.wait_for(lambda n=n: len(states) > n)
    probe.wait_for(lambda: any(values(s)['episodes'] == '1' for s in episode_diag(diags)),
                   timeout=5.0)
    assert len(goals) >= 2 and goals[-1].point != first_goal

    # ~/reset draws a new goal.
    response = probe.call(Trigger, '/sim_node/reset', Trigger.Request())
    assert response.success and 'goal' in response.message
    probe.wait_for(lambda: len(goals) >= 3)


def test_realtime_publishes_at_control_rate(probe, node_process):
    node_process(MODULE, mode='realtime')
    states = probe.listen(JointState, '/joint_states', state_qos())
    probe.wait_for(lambda: len(states) > 5, timeout=15.0)
    with probe.lock:
        n0 = len(states)
    time.sleep(1.0)
    rate = len(states) - n0
    assert 35 <= rate <= 60, rate  # KukaReach runs at 50 Hz


@pytest.mark.parametrize('sig', [signal.SIGINT, signal.SIGTERM], ids=['SIGINT', 'SIGTERM'])
def test_signal_exits_cleanly(probe, node_process, sig):
    proc = node_process(MODULE, mode='realtime')
    states = probe.listen(JointState, '/joint_states', state_qos())
    probe.wait_for(lambda: states, timeout=15.0)
    code, seconds = proc.stop(sig)
    assert code == 0, proc.log()
    assert seconds < 2.0
    assert 'never retrieved' not in proc.log()
