"""
inference_node serving a push policy under random sequences of faults of its three inputs.

A probe plays the robot and its perception: a JointState stream at 100 Hz, an object
PoseStamped stream at 50 Hz (valid, scaled or sign-flipped quaternions, NaN, zero quaternion,
foreign frame, silences longer than object_timeout), joint-state gaps longer than obs_timeout,
and goals (valid or foreign frame), in any order, against ONE running node per example. After
every step: the process lives; every command is finite, one per joint, within bounds; with all
three inputs good the policy's command for exactly those inputs (the quaternion made unit,
w >= 0) comes within 3 control periods; any input bad or stale, the hold comes and the
reason shows on /diagnostics.
"""

from __future__ import annotations

from pathlib import Path
import tempfile
import time

from hypothesis import strategies as st
from hypothesis.stateful import initialize, invariant, rule, RuleBasedStateMachine
from nodes_helpers import (
    ACTIVE_AT_ONCE,
    JOINTS,
    LINEAR_BOUND,
    NodeProcess,
    Probe,
    run_stateful,
    seen_since,
    stop_machine_node,
    Stream,
    write_linear_policy,
)
import numpy as np
import pytest
from trpo_ros.nodes.conversions import ERROR, object_qos, status_level, WARN
from trpo_ros.runtime import Policy

pytestmark = pytest.mark.integration

MODULE = 'trpo_ros.nodes.inference_node'
OBS_TIMEOUT = 0.1
OBJECT_TIMEOUT = 0.2
PERIOD = 1 / 50
SLACK = 0.4  # DDS delivery, the streams and scheduling on a loaded 2-core machine
BOUND = LINEAR_BOUND  # write_linear_policy's command bounds
EXAMPLES, STEPS = 6, 40
steps_run = [0]


class ObjectInputMachine(RuleBasedStateMachine):
    """The robot and perception side of one inference_node serving a push policy."""

    def __init__(self) -> None:
        super().__init__()
        from geometry_msgs.msg import PoseStamped

        self.dir = Path(tempfile.mkdtemp(prefix='trpo_object_stateful_'))
        model = write_linear_policy(self.dir / 'push.onnx', with_object=True)
        self.policy = Policy.load(model)
        self.probe = Probe()
        self.object_pub = self.probe.publisher(PoseStamped, '/trpo/object_pose', object_qos())
        self.proc = NodeProcess(MODULE, {
            'model_path': str(model), 'obs_timeout': OBS_TIMEOUT,
            'object_timeout': OBJECT_TIMEOUT, 'control_rate_hz': 50.0,
            'diagnostics_period': 0.1, **ACTIVE_AT_ONCE}, self.dir / 'node.log')
        self.probe.wait_subscribers(self.probe.state_pub)
        self.probe.wait_subscribers(self.object_pub)
        self.states = Stream(lambda content: self.probe.publish_state(*content), 0.01)
        self.objects = Stream(self._publish_object, 0.02)
        self.positions: np.ndarray | None = None  # of the valid state streaming (None: none)
        self.hold: np.ndarray | None = None  # the last complete state: what a hold sends
        self.goal: np.ndarray | None = None  # the goal the node holds (None: none / rejected)
        self.goal_fault = 'waiting for a goal'  # why there is none
        self.object: np.ndarray | None = None  # [xyz, unit quat w >= 0] it holds, else None
        self.object_fault = 'waiting for an object pose'  # why the object cannot be used
        self.streamed = (None, self.object_fault)  # (object, fault) of the stream's content
        self.checked = 0

    def _publish_object(self, content: tuple[str, list[float], list[float]]) -> None:
        from geometry_msgs.msg import PoseStamped

        frame, xyz, quat = content
        msg = PoseStamped()
        msg.header.frame_id = frame
        p, q = msg.pose.position, msg.pose.orientation
        p.x, p.y, p.z = xyz
        q.x, q.y, q.z, q.w = quat
        self.object_pub.publish(msg)

    def teardown(self) -> None:
        """Stop the stream(s), the node (clean exit), the probe."""
        stop_machine_node(self.proc, self.probe, [self.states, self.objects], self.dir)

    # --------------------------------------------------------------------------- helpers
    def wait_command(self, target: np.ndarray, since: float, timeout: float) -> None:
        """Wait for a command equal to `target` (clipped to the bounds) sent after `since`."""
        expected = np.clip(target, -BOUND, BOUND)

        def sent() -> bool:
            return seen_since(self.probe.commands, since,
                              lambda c: np.allclose(c, expected, atol=1e-5))

        try:
            self.probe.wait_for(sent, timeout=timeout, period=0.005)
        except AssertionError:
            with self.probe.lock:
                last = self.probe.commands[-1][1] if self.probe.commands else None
            raise AssertionError(f'no command {expected} within {timeout:.2f} s (last {last});'
                                 f' node log:\n{self.proc.log()[-2000:]}') from None

    def wait_diag(self, text: str, level: int, since: float) -> None:
        """Wait for a status of the node at `level` whose message contains `text`."""
        def found() -> bool:
            return seen_since(self.probe.diagnostics, since, lambda s: s.name.startswith(
                'inference') and status_level(s) == level and text in s.message)
        self.probe.wait_for(found, timeout=1.0 + SLACK)

    def settle(self, since: float, within: float = 3 * PERIOD) -> None:
        """With a valid state streaming: the policy's command, or the hold and its reason."""
        if self.positions is None:
            return
        if self.goal is not None and self.object is not None:
            obs = np.concatenate([self.positions, np.zeros(3), self.object, self.goal])
            target = self.policy.act(obs.astype(np.float32)).astype(np.float64)
            self.wait_command(target, since, within + SLACK)
            return
        self.wait_command(self.hold, since, within + SLACK)
        fault = self.goal_fault if self.goal is None else self.object_fault  # goal first
        self.wait_diag(fault, WARN if fault.startswith('waiting') else ERROR, since)

    # ----------------------------------------------------------------------------- rules
    @initialize()
    def serving(self) -> None:
        """Start where a robot runs: all three inputs good (then a subset of the faults)."""
        self.valid_state([0.1, -0.2, 0.3])
        self.goal_message(True, [0.5, 0.1, 0.2])
        self.object_pose('valid', [0.45, 0.0, 0.22], 0.3)

    @rule(pos=st.lists(st.floats(-1.5, 1.5), min_size=3, max_size=3))
    def valid_state(self, pos: list[float]) -> None:
        since = time.monotonic()
        self.states.content = (JOINTS, pos)
        self.positions = self.hold = np.array(pos)
        self.settle(since)

    @rule(seconds=st.floats(OBS_TIMEOUT + 0.05, OBS_TIMEOUT + 0.2))
    def state_gap(self, seconds: float) -> None:
        content, self.states.content = self.states.content, None
        since = time.monotonic()
        if self.hold is not None and content is not None:
            self.wait_command(self.hold, since, OBS_TIMEOUT + 3 * PERIOD + SLACK)
            self.wait_diag('no JointState', ERROR, since)
        time.sleep(max(0.0, since + seconds - time.monotonic()))
        since = time.monotonic()
        self.states.content = content
        self.settle(since)

    @rule(kind=st.sampled_from(['valid', 'valid', 'scaled', 'flipped', 'nan', 'zero_quat',
                                'foreign']),
          xyz=st.lists(st.floats(-1.0, 1.0), min_size=3, max_size=3),
          yaw=st.floats(-3.1, 3.1))
    def object_pose(self, kind: str, xyz: list[float], yaw: float) -> None:
        unit = [0.0, 0.0, float(np.sin(yaw / 2)), float(np.cos(yaw / 2))]  # w >= 0
        quat = {'scaled': [2.0 * v for v in unit], 'flipped': [-v for v in unit],
                'zero_quat': [0.0] * 4}.get(kind, unit)
        position = [float('nan'), 0.0, 0.0] if kind == 'nan' else xyz
        since = time.monotonic()
        self.objects.content = ('camera' if kind == 'foreign' else 'world', position, quat)
        if kind in ('valid', 'scaled', 'flipped'):
            self.streamed = (np.array(xyz + unit), '')
        else:
            self.streamed = (None, {'nan': 'NaN/Inf', 'zero_quat': 'zero quaternion',
                                    'foreign': "frame 'camera'"}[kind])
        self.object, self.object_fault = self.streamed
        self.settle(since)

    @rule(seconds=st.floats(OBJECT_TIMEOUT + 0.05, OBJECT_TIMEOUT + 0.3))
    def perception_silence(self, seconds: float) -> None:
        content, self.objects.content = self.objects.content, None
        since = time.monotonic()
        if self.object is not None:  # a good pose ages; a rejected one stays rejected
            self.object, self.object_fault = None, 'object pose is stale'
            self.settle(since, within=OBJECT_TIMEOUT + 3 * PERIOD)
        time.sleep(max(0.0, since + seconds - time.monotonic()))
        since = time.monotonic()
        self.objects.content = content
        if content is not None:
            self.object, self.object_fault = self.streamed
        self.settle(since)

    @rule(valid=st.booleans(), xyz=st.lists(st.floats(-1.0, 1.0), min_size=3, max_size=3))
    def goal_message(self, valid: bool, xyz: list[float]) -> None:
        from geometry_msgs.msg import PointStamped

        msg = PointStamped()
        msg.header.frame_id = 'world' if valid else 'camera_link'
        msg.point.x, msg.point.y, msg.point.z = xyz
        since = time.monotonic()
        self.probe.goal_pub.publish(msg)
        self.goal = np.array(xyz) if valid else None
        self.goal_fault = '' if valid else 'rejected goal'
        self.settle(since)

    # ------------------------------------------------------------------------ invariants
    @invariant()
    def node_alive_and_commands_safe(self) -> None:
        steps_run[0] += 1
        assert self.proc.alive(), self.proc.log()[-3000:]
        with self.probe.lock:
            cmds = list(self.probe.commands[self.checked:])
            self.checked += len(cmds)
        for _, c in cmds:
            assert c.shape == (3,) and np.isfinite(c).all(), c
            assert np.all(np.abs(c) <= BOUND + 1e-9), c


def test_push_inputs_survive_random_fault_sequences() -> None:
    run_stateful(ObjectInputMachine, EXAMPLES, STEPS, steps_run)
