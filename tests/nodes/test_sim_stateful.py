"""
sim_node under random sequences of good, malformed and flooded input, over real DDS.

One realtime sim_node per example takes commands as a robot does (a ros2_control forward
command controller's topic, default `ros2 topic pub` QoS: reliable, volatile), goals from
volatile and transient-local publishers, and ~/reset calls. After every step: the process is
alive and still publishing joint states, every position is finite and within the joint limits,
and each rejected command or goal is counted on /diagnostics. At the end, the node has stepped
at no less than half its control rate over the whole example: faults do not stall it.
"""

from __future__ import annotations

from pathlib import Path
import signal
import tempfile
import time

from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PointStamped
import gymnasium as gym
from hypothesis import strategies as st
from hypothesis.stateful import invariant, rule, RuleBasedStateMachine
from nodes_helpers import NodeProcess, Probe, run_stateful
import numpy as np
import pytest
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import Trigger
from trpo_ros.nodes.conversions import command_qos, latched_qos, state_qos
import trpo_ros.sim  # noqa: F401 - registers the envs

pytestmark = pytest.mark.integration

MODULE = 'trpo_ros.nodes.sim_node'
EXAMPLES, STEPS = 4, 55
steps_run = [0]


def kuka_info() -> dict:
    env = gym.make('trpo_ros/KukaReach-v0')
    info = env.unwrapped.spec_info()
    env.close()
    return info


INFO = kuka_info()
LOWER, UPPER = np.array(INFO['joint_lower']), np.array(INFO['joint_upper'])
CONTROL_RATE_HZ = float(INFO['control_rate_hz'])


def float_list(text: str) -> list[float]:
    """Return the numbers inside the [...] of a reply such as 'new episode, goal [1, 2, 3]'."""
    return [float(v) for v in text[text.index('[') + 1:text.index(']')].split(',')]


class SimMachine(RuleBasedStateMachine):
    """A client of one sim_node process that sends anything a robot stack might."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix='trpo_sim_stateful_'))
        self.probe = Probe()
        self.proc = NodeProcess(MODULE, {'mode': 'realtime', 'follow_goal_topic': True,
                                         'diagnostics_period': 0.1}, self.dir / 'sim.log')
        self.states = self.probe.listen(JointState, '/joint_states', state_qos())
        self.diags = self.probe.listen(DiagnosticArray, '/diagnostics')
        self.commands = self.probe.publisher(Float64MultiArray,
                                             '/forward_position_controller/commands',
                                             command_qos())
        self.followed: tuple[np.ndarray | None, float] = (None, 0.0)  # newest valid goal
        self.goals = {True: self.probe.publisher(PointStamped, '/trpo/goal', latched_qos()),
                      False: self.probe.publisher(PointStamped, '/trpo/goal', 10)}
        self.probe.wait_for(lambda: self.states, timeout=20.0)
        self.probe.wait_subscribers(self.commands)
        self.probe.wait_for(lambda: self.diags, timeout=5.0)
        with self.probe.lock:
            self.started = self.stamped_steps()

    def teardown(self) -> None:
        """Stop the node (clean exit) and the probe."""
        alive = self.proc.alive()
        # The node's own step count between two of its /diagnostics stamps at least 1 s apart.
        ended = self.probe.wait_for(lambda: self.stamped_steps()[0] > self.started[0] + 1.0
                                    and self.stamped_steps(), timeout=5.0)
        code, _ = self.proc.stop(signal.SIGINT)
        self.probe.close()
        assert alive and code == 0, self.proc.log()[-3000:]
        seconds, steps = ended[0] - self.started[0], ended[1] - self.started[1]
        assert steps > 0.5 * CONTROL_RATE_HZ * seconds, f'{steps} steps in {seconds:.1f} s'

    def positions(self) -> np.ndarray:
        with self.probe.lock:
            return np.array(self.states[-1].position)

    def counter(self, key: str) -> int:
        """Return the newest value of one of sim_node's diagnostics counts; hold probe.lock."""
        for msg in reversed(self.diags):
            for status in msg.status:
                if status.name.startswith('sim_node'):
                    return int({kv.key: kv.value for kv in status.values}[key])
        return 0

    def stamped_steps(self) -> tuple[float, int]:
        """Return (stamp in s, steps) of the newest /diagnostics message; hold probe.lock."""
        stamp = self.diags[-1].header.stamp
        return stamp.sec + 1e-9 * stamp.nanosec, self.counter('steps')

    def counter_now(self, key: str) -> int:
        with self.probe.lock:
            return self.counter(key)

    def expect_rejected(self, key: str, before: int) -> None:
        """Wait until /diagnostics counts one more rejection than `before`."""
        self.probe.wait_for(lambda: self.counter(key) > before, timeout=5.0)

    # ----------------------------------------------------------------------------- rules
    @rule(deltas=st.lists(st.floats(-0.3, 0.3), min_size=7, max_size=7))
    def good_command(self, deltas: list[float]) -> None:
        target = self.positions() + np.array(deltas)
        self.commands.publish(Float64MultiArray(data=target.tolist()))
        time.sleep(0.03)

    @rule(values=st.lists(st.floats(-50, 50), min_size=7, max_size=7))
    def out_of_limits_command(self, values: list[float]) -> None:
        self.commands.publish(Float64MultiArray(data=values))  # clipped as a robot would
        time.sleep(0.03)

    @rule(size=st.sampled_from([0, 3, 8, 10**6]))
    def wrong_length(self, size: int) -> None:
        before = self.counter_now('rejected_commands')
        self.commands.publish(Float64MultiArray(data=np.zeros(size).tolist()))
        self.expect_rejected('rejected_commands', before)

    @rule(value=st.sampled_from([float('nan'), float('inf'), -float('inf')]),
          joint=st.integers(0, 6))
    def non_finite(self, value: float, joint: int) -> None:
        data = self.positions()
        data[joint] = value
        before = self.counter_now('rejected_commands')
        self.commands.publish(Float64MultiArray(data=data.tolist()))
        self.expect_rejected('rejected_commands', before)

    @rule(n=st.integers(50, 300))
    def flood(self, n: int) -> None:
        base = self.positions()
        for k in range(n):
            self.commands.publish(Float64MultiArray(data=(base + 0.001 * (k % 7)).tolist()))
        time.sleep(0.05)

    @rule(kind=st.sampled_from(['valid', 'nan', 'foreign']), latched=st.booleans(),
          xyz=st.lists(st.floats(-1, 1), min_size=3, max_size=3))
    def goal(self, kind: str, latched: bool, xyz: list[float]) -> None:
        msg = PointStamped()
        msg.header.frame_id = 'camera' if kind == 'foreign' else 'world'
        msg.point.x, msg.point.y, msg.point.z = [float('nan')] * 3 if kind == 'nan' else xyz
        before = self.counter_now('rejected_goals')
        self.goals[latched].publish(msg)
        if kind != 'valid':
            self.expect_rejected('rejected_goals', before)
        else:
            self.followed = (np.array(xyz), time.monotonic())

    @rule()
    def reset(self) -> None:
        response = self.probe.call(Trigger, '/sim_node/reset', Trigger.Request())
        assert response.success, response.message
        goal, sent = self.followed
        if goal is not None and time.monotonic() - sent > 0.5:  # delivered by now
            # Following the goal topic, a new episode keeps the client's goal.
            assert np.allclose(float_list(response.message), goal, atol=1e-3), response.message

    # ------------------------------------------------------------------------ invariants
    @invariant()
    def alive_and_physical(self) -> None:
        steps_run[0] += 1
        assert self.proc.alive(), self.proc.log()[-3000:]
        with self.probe.lock:
            count = len(self.states)
        # Still stepping; the bound is loose for loaded CI machines, the rate check is at teardown.
        self.probe.wait_for(lambda: len(self.states) > count, timeout=3.0)
        pos = self.positions()
        assert np.isfinite(pos).all(), pos
        assert np.all(pos >= LOWER - 0.05) and np.all(pos <= UPPER + 0.05), pos


def test_sim_node_survives_random_input():
    run_stateful(SimMachine, EXAMPLES, STEPS, steps_run)
