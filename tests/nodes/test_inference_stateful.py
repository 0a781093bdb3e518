"""
inference_node under random sequences of faults, over real DDS (a hypothesis state machine).

A probe plays the robot: a JointState stream at 100 Hz (valid, NaN, missing / duplicate /
unicode joints, 10^6-element arrays, gaps longer than obs_timeout), goals from volatile and
transient-local publishers (valid, NaN, foreign frame, wrong length), model swaps (good,
corrupt, other joints, missing), max_delta changes and lifecycle transitions in any order,
legal or not — all against ONE running node per example. After every step: the process is
alive; every command is finite, one per joint, within bounds and within max_delta of the one
before; no command before a complete JointState; a fault is answered by the hold within
obs_timeout + 3 control periods and shows on /diagnostics; policy commands return within 3
periods of recovery.
"""

from __future__ import annotations

from pathlib import Path
import tempfile
import time

from hypothesis import strategies as st
from hypothesis.stateful import invariant, rule, RuleBasedStateMachine
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
from trpo_ros.nodes.conversions import ERROR, status_level
from trpo_ros.runtime import Policy

pytestmark = pytest.mark.integration

MODULE = 'trpo_ros.nodes.inference_node'
OBS_TIMEOUT = 0.1
PERIOD = 1 / 50  # the linear test policies are 50 Hz position policies
SLACK = 0.4  # DDS delivery, the 100 Hz stream and scheduling on a loaded 2-core machine
BOUND = LINEAR_BOUND  # write_linear_policy's command bounds
EXAMPLES, STEPS = 4, 60
LOADABLE = {'good': 'a', 'good2': 'a', 'other': 'b'}  # model -> its joint family
steps_run = [0]


def rate_limited(target: np.ndarray, previous: np.ndarray | None, max_delta: float) -> np.ndarray:
    """Return the command the node sends for `target` after `previous` (bounds, max_delta)."""
    out = np.clip(target, -BOUND, BOUND)
    if max_delta > 0 and previous is not None:
        out = np.clip(out, previous - max_delta, previous + max_delta)
    return out


class InferenceMachine(RuleBasedStateMachine):
    """The robot side of one inference_node process, and what the node must do."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix='trpo_stateful_'))
        self.models = {
            'good': write_linear_policy(self.dir / 'good.onnx', seed=0),
            'good2': write_linear_policy(self.dir / 'good2.onnx', seed=1),
            'other': write_linear_policy(self.dir / 'other.onnx', joint_names=['b1', 'b2', 'b3']),
            'corrupt': self.dir / 'corrupt.onnx',
            'missing': self.dir / 'missing.onnx',
        }
        self.models['corrupt'].write_bytes(self.models['good'].read_bytes()[:300])
        self.policies = {k: Policy.load(self.models[k]) for k in ('good', 'good2')}
        self.probe = Probe()
        from geometry_msgs.msg import PointStamped

        self.volatile_goal_pub = self.probe.publisher(PointStamped, '/trpo/goal', 10)
        self.proc = NodeProcess(MODULE, {
            'model_path': str(self.models['good']), 'obs_timeout': OBS_TIMEOUT,
            'control_rate_hz': 50.0, 'diagnostics_period': 0.1, **ACTIVE_AT_ONCE},
            self.dir / 'node.log')
        self.probe.wait_subscribers(self.probe.state_pub)
        self.stream = Stream(lambda content: self.probe.publish_state(*content), 0.01)
        self.lifecycle = 'active'
        self.loaded, self.model_param = 'good', 'good'
        self.max_delta = 0.0
        self.epoch = time.monotonic()  # commands before this are not rate-checked
        self.goal: np.ndarray | None = None  # the goal the node holds (None: none / rejected)
        self.valid_positions: np.ndarray | None = None  # of the current valid stream content
        self.hold_positions: np.ndarray | None = None  # last complete state since activation
        self.checked = 0  # commands already checked by the invariants

    def teardown(self) -> None:
        """Stop the stream(s), the node (clean exit), the probe."""
        stop_machine_node(self.proc, self.probe, [self.stream], self.dir)

    # --------------------------------------------------------------------------- helpers
    def commands(self) -> list[tuple[float, np.ndarray]]:
        with self.probe.lock:
            return list(self.probe.commands)

    def serving(self) -> bool:
        return self.lifecycle == 'active'

    def wait_command(self, target: np.ndarray, since: float, timeout: float) -> None:
        """Wait for a command sent for `target` (bounds and max_delta applied) after `since`."""
        deadline = since + timeout
        while True:
            cmds = self.commands()
            for k in range(1, len(cmds)):
                t, c = cmds[k]
                if t >= since and np.allclose(
                        c, rate_limited(target, cmds[k - 1][1], self.max_delta), atol=1e-5):
                    return
            if len(cmds) == 1 and cmds[0][0] >= since and np.allclose(
                    cmds[0][1], np.clip(target, -BOUND, BOUND), atol=1e-5):
                return
            if time.monotonic() > deadline:
                last = cmds[-1][1] if cmds else None
                raise AssertionError(f'no command for {target} within {timeout:.2f} s '
                                     f'(last {last}); node log:\n{self.proc.log()[-2000:]}')
            time.sleep(0.005)

    def wait_diag(self, text: str, since: float, timeout: float = 1.0) -> None:
        """Wait for an ERROR status of the node whose message contains `text`."""
        def found() -> bool:
            return seen_since(self.probe.diagnostics, since, lambda s: status_level(s) == ERROR
                              and text in s.message and s.name.startswith('inference_node'))
        self.probe.wait_for(found, timeout=timeout)

    def expect_no_commands(self, seconds: float) -> None:
        start = time.monotonic()
        time.sleep(seconds)
        late = [t for t, _ in self.commands() if t > start + 0.03]
        assert not late, f'{len(late)} commands although the node must not command'

    def policy_target(self) -> np.ndarray:
        obs = np.concatenate([self.valid_positions, np.zeros(3), self.goal]).astype(np.float32)
        return self.policies[self.loaded].act(obs).astype(np.float64)

    def settle_valid(self, since: float) -> None:
        """After a change, with a valid state streaming: the node serves or holds."""
        if not self.serving():
            return
        if self.loaded == 'other':  # the stream names a1..a3, the model drives b1..b3
            self.fault('lacks joint', since)
        elif self.goal is not None:
            self.wait_command(self.policy_target(), since, 3 * PERIOD + SLACK)
        else:
            self.wait_command(self.valid_positions, since, 3 * PERIOD + SLACK)

    def fault(self, text: str, since: float, hold_within: float = 3 * PERIOD) -> None:
        """Check a fault: the hold (or, fail closed, nothing) and an ERROR naming it."""
        if not self.serving():
            return
        if self.hold_positions is None:
            self.expect_no_commands(3 * PERIOD + 0.05)
        else:
            self.wait_command(self.hold_positions, since, hold_within + SLACK)
        self.wait_diag(text, since)

    # ----------------------------------------------------------------------------- rules
    @rule(pos=st.lists(st.floats(-1.5, 1.5), min_size=3, max_size=3),
          extra=st.booleans(), order=st.permutations([0, 1, 2]))
    def valid_state(self, pos: list[float], extra: bool, order: list[int]) -> None:
        names = [JOINTS[i] for i in order] + (['gripper'] if extra else [])
        by_name = dict(zip(JOINTS, pos), gripper=9.0)
        since = time.monotonic()
        self.stream.content = (names, [by_name[n] for n in names])
        self.valid_positions = np.array(pos)
        if self.serving() and self.loaded != 'other':
            self.hold_positions = self.valid_positions
        self.settle_valid(since)

    @rule(kind=st.sampled_from(['nan', 'missing', 'duplicate', 'unicode', 'short']))
    def bad_state(self, kind: str) -> None:
        content, text = {
            'nan': ((JOINTS, [0.1, float('nan'), 0.2]), 'NaN'),
            'missing': ((['a1', 'a3'], [0.1, 0.2]), 'lacks joint'),
            'duplicate': ((['a1', 'a2', 'a3', 'a1'], [0.1, 0.2, 0.3, 0.4]), 'twice'),
            'unicode': ((['ä1', 'a2', 'ß3'], [0.1, 0.2, 0.3]), 'lacks joint'),
            'short': ((JOINTS, [0.1, 0.2]), '2 positions'),
        }[kind]
        if self.loaded == 'other' and kind != 'duplicate':
            text = 'lacks joint'  # the names are checked first
        since = time.monotonic()
        self.stream.content = content
        self.valid_positions = None
        self.fault(text, since)

    @rule()
    def huge_state(self) -> None:
        self.stream.content = None
        since = time.monotonic()
        self.probe.publish_state(JOINTS, np.zeros(10**6), np.zeros(10**6))
        self.valid_positions = None
        self.fault('lacks joint' if self.loaded == 'other' else '1000000 positions', since,
                   hold_within=OBS_TIMEOUT + 3 * PERIOD)

    @rule(seconds=st.floats(OBS_TIMEOUT + 0.05, OBS_TIMEOUT + 0.25))
    def gap(self, seconds: float) -> None:
        content, self.stream.content = self.stream.content, None
        since = time.monotonic()
        if self.serving() and self.hold_positions is not None and content is not None:
            self.wait_command(self.hold_positions, since, OBS_TIMEOUT + 3 * PERIOD + SLACK)
            self.wait_diag('no JointState', since)
        time.sleep(max(0.0, since + seconds - time.monotonic()))
        since = time.monotonic()
        self.stream.content = content
        if self.valid_positions is not None:
            self.settle_valid(since)

    @rule(kind=st.sampled_from(['valid', 'valid', 'nan', 'foreign', 'no_frame']),
          latched=st.booleans(), xyz=st.lists(st.floats(-1.0, 1.0), min_size=3, max_size=3))
    def goal_message(self, kind: str, latched: bool, xyz: list[float]) -> None:
        from geometry_msgs.msg import PointStamped

        msg = PointStamped()
        msg.header.frame_id = {'foreign': 'camera_link', 'no_frame': ''}.get(kind, 'world')
        values = [float('nan'), 0.0, 0.0] if kind == 'nan' else xyz
        msg.point.x, msg.point.y, msg.point.z = values
        since = time.monotonic()
        (self.probe.goal_pub if latched else self.volatile_goal_pub).publish(msg)
        if kind in ('valid', 'no_frame'):
            self.goal = np.array(xyz)
            if self.valid_positions is not None:
                self.settle_valid(since)
        else:
            self.goal = None
            if self.valid_positions is not None:
                self.fault('rejected goal', since)

    @rule()
    def goal_parameter_wrong_length(self) -> None:
        since = time.monotonic()
        self.probe.set_parameters('inference_node', goal=[1.0, 2.0])
        self.goal = None
        if self.valid_positions is not None:
            self.fault('goal has 2 values', since)

    @rule(kind=st.sampled_from(['good', 'good2', 'corrupt', 'other', 'missing']))
    def set_model(self, kind: str) -> None:
        (result,) = self.probe.set_parameters('inference_node',
                                              model_path=str(self.models[kind]))
        if self.lifecycle == 'unconfigured':  # stored; loaded by the next configure
            assert result.successful, result.reason
            self.model_param = kind
            return
        good = LOADABLE.get(kind) == LOADABLE[self.loaded]  # a hot swap keeps the joints
        assert result.successful == good, (kind, self.loaded, result.reason)
        if good:
            self.loaded = self.model_param = kind
        if self.valid_positions is not None:
            self.settle_valid(time.monotonic())

    @rule(max_delta=st.sampled_from([0.0, 0.01, 0.05, 0.3]))
    def set_max_delta(self, max_delta: float) -> None:
        (result,) = self.probe.set_parameters('inference_node', max_delta=max_delta)
        assert result.successful, result.reason
        self.max_delta = max_delta
        self.epoch = time.monotonic() + 0.05

    @rule(transition=st.sampled_from(['configure', 'activate', 'deactivate', 'cleanup']))
    def lifecycle_transition(self, transition: str) -> None:
        from lifecycle_msgs.msg import Transition

        legal = {('unconfigured', 'configure'): 'inactive', ('inactive', 'activate'): 'active',
                 ('active', 'deactivate'): 'inactive', ('inactive', 'cleanup'): 'unconfigured'}
        expected = legal.get((self.lifecycle, transition))
        if transition == 'configure' and self.model_param not in LOADABLE:
            expected = None  # the stored model_path cannot be loaded
        ids = {'configure': Transition.TRANSITION_CONFIGURE,
               'activate': Transition.TRANSITION_ACTIVATE,
               'deactivate': Transition.TRANSITION_DEACTIVATE,
               'cleanup': Transition.TRANSITION_CLEANUP}
        ok = self.probe.change_state('inference_node', ids[transition])
        assert ok == (expected is not None), (self.lifecycle, transition)
        if expected is None:
            return
        self.lifecycle = expected
        if transition == 'configure':
            self.loaded, self.epoch = self.model_param, time.monotonic() + 0.05
            if self.loaded == 'other':
                self.hold_positions = None  # no complete state for b1..b3 ever
        if transition == 'deactivate':
            self.expect_no_commands(3 * PERIOD + 0.05)
        if transition == 'activate':
            self.hold_positions = None  # fail closed again until a complete state
            self.probe.wait_subscribers(self.probe.state_pub)
            if self.valid_positions is not None:
                if self.loaded != 'other':
                    self.hold_positions = self.valid_positions
                self.settle_valid(time.monotonic())
            else:
                self.expect_no_commands(3 * PERIOD + 0.05)

    # ------------------------------------------------------------------------ invariants
    @invariant()
    def node_alive_and_commands_safe(self) -> None:
        steps_run[0] += 1
        assert self.proc.alive(), self.proc.log()[-3000:]
        cmds = self.commands()
        for k in range(max(self.checked, 0), len(cmds)):
            t, c = cmds[k]
            assert c.shape == (3,) and np.isfinite(c).all(), c
            assert np.all(np.abs(c) <= BOUND + 1e-9), c
            if k > 0 and self.max_delta > 0 and cmds[k - 1][0] > self.epoch:
                step = np.abs(c - cmds[k - 1][1]).max()
                assert step <= self.max_delta + 1e-9, (step, self.max_delta)
        self.checked = len(cmds)


def test_inference_node_survives_random_fault_sequences():
    run_stateful(InferenceMachine, EXAMPLES, STEPS, steps_run)
