"""Safety modes without ROS: every transition, every e-stop trigger, the hand-over ramp."""

from __future__ import annotations

from pathlib import Path
import shutil
import tempfile
from typing import Any

from hypothesis import given, HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import invariant, rule, RuleBasedStateMachine
from nodes_helpers import JOINTS, run_stateful, write_linear_policy
import numpy as np
import pytest
from trpo_ros.safety_modes import MODES, REQUESTS, SafetyLimits, SafetyModes
from trpo_ros.serving import PolicyServer, ServedModel

pytestmark = pytest.mark.unit

ZEROS = [0.0, 0.0, 0.0]
GOAL = np.array([0.4, 0.0, 0.5])

# (mode before, request) -> (accepted, mode after). Every mode, every request.
TRANSITIONS = {
    ('standby', 'standby'): (True, 'standby'),
    ('standby', 'active'): (True, 'active'),
    ('standby', 'hold'): (True, 'hold'),
    ('standby', 'estop'): (True, 'estop'),
    ('standby', 'reset_estop'): (False, 'standby'),
    ('active', 'standby'): (True, 'standby'),
    ('active', 'active'): (True, 'active'),
    ('active', 'hold'): (True, 'hold'),
    ('active', 'estop'): (True, 'estop'),
    ('active', 'reset_estop'): (False, 'active'),
    ('hold', 'standby'): (True, 'standby'),
    ('hold', 'active'): (True, 'active'),
    ('hold', 'hold'): (True, 'hold'),
    ('hold', 'estop'): (True, 'estop'),
    ('hold', 'reset_estop'): (False, 'hold'),
    ('estop', 'standby'): (False, 'estop'),
    ('estop', 'active'): (False, 'estop'),
    ('estop', 'hold'): (False, 'estop'),
    ('estop', 'estop'): (True, 'estop'),
    ('estop', 'reset_estop'): (True, 'standby'),
}


def in_mode(mode: str) -> SafetyModes:
    modes = SafetyModes()
    if mode == 'estop':
        modes.trip('test')
    else:
        modes.request(mode)
    assert modes.mode == mode
    return modes


def test_the_table_covers_every_mode_and_request() -> None:
    assert set(TRANSITIONS) == {(m, r) for m in MODES for r in REQUESTS}


@pytest.mark.parametrize('before, asked', sorted(TRANSITIONS))
def test_every_transition(before: str, asked: str) -> None:
    modes = in_mode(before)
    accepted, after = TRANSITIONS[before, asked]
    ok, message = modes.request(asked)
    assert (ok, modes.mode) == (accepted, after), message
    assert message
    if after == 'active' and before != 'active':
        assert modes.handing_over
    if before == 'estop' and after == 'estop':
        assert modes.estop_reason == 'test'  # the first reason is kept


def test_unknown_requests_and_start_modes_are_refused() -> None:
    modes = SafetyModes()
    ok, message = modes.request('go')
    assert not ok and 'unknown mode request' in message and modes.mode == 'standby'
    with pytest.raises(ValueError, match='start mode'):
        SafetyModes('estop')
    assert SafetyModes().mode == 'standby'  # a robot never moves without a request
    assert 'handover_rate' in SafetyLimits(handover_rate=0.0).check()
    assert SafetyLimits().check() == ''


# --------------------------------------------------------------------- through the server
def served(tmp_path: Path, start_mode: str = 'active', control_mode: str = 'position',
           **limits: float) -> PolicyServer:
    server = PolicyServer()
    path = write_linear_policy(tmp_path / f'{control_mode}.onnx', control_mode=control_mode)
    server.configure(ServedModel(str(path)))
    server.modes = SafetyModes(start_mode, SafetyLimits(**{'handover_rate': 1e9, **limits}))
    server.set_goal(lambda: GOAL)
    return server


def test_standby_previews_and_sends_the_measured_pose(tmp_path: Path) -> None:
    server = served(tmp_path, 'standby')
    for pose in ([0.1, 0.2, 0.3], [0.2, 0.1, 0.0]):
        step = server.step(JOINTS, pose, ZEROS, 0.0)
        assert np.allclose(step.command, pose) and step.fault == ''
        expected = server.model.policy.act(server.model.layout.fill(GOAL))
        assert np.allclose(step.preview, expected)
    velocity = served(tmp_path, 'standby', control_mode='velocity')
    assert np.allclose(velocity.step(JOINTS, [0.1, 0.2, 0.3], ZEROS, 0.0).command, 0.0)


def test_hold_and_estop_freeze_within_one_step(tmp_path: Path) -> None:
    server = served(tmp_path, 'active')
    for request in ('hold', 'estop'):
        server.request_mode('reset_estop')
        server.request_mode('active')
        policy = server.step(JOINTS, [0.1, 0.2, 0.3], ZEROS, 0.0).command
        assert not np.allclose(policy, [0.1, 0.2, 0.3])
        assert server.request_mode(request)[0]
        # max_delta would limit a change of the command; hold and e-stop take effect at once,
        # frozen at the pose measured when they were asked for, not tracking.
        for pose in ([0.5, 0.5, 0.5], [0.9, -0.9, 0.9]):
            command = server.step(JOINTS, pose, ZEROS, 0.01).command
            assert np.allclose(command, [0.1, 0.2, 0.3]), request
    velocity = served(tmp_path, 'active', control_mode='velocity')
    assert np.any(velocity.step(JOINTS, [0.1, 0.2, 0.3], ZEROS, 0.0).command != 0.0)
    velocity.modes.request('estop')
    assert np.allclose(velocity.step(JOINTS, [0.1, 0.2, 0.3], ZEROS, 0.0).command, 0.0)


def test_consecutive_faults_latch_the_estop(tmp_path: Path) -> None:
    server = served(tmp_path, 'active', estop_after_faults=3)
    good = [0.1, 0.2, 0.3]
    nan = [float('nan')] * 3
    server.step(JOINTS, good, ZEROS, 0.0)
    for _ in range(2):
        assert server.step(JOINTS, nan, ZEROS, 0.0).fault
    server.step(JOINTS, good, ZEROS, 0.0)  # a good step resets the count
    server.goal = None
    for _ in range(10):  # waiting for a goal is not a fault of the robot
        assert server.step(JOINTS, good, ZEROS, 0.0).severity == 'warn'
    assert server.modes.mode == 'active'
    server.set_goal(lambda: GOAL)
    server.step(JOINTS, nan, ZEROS, 0.0)
    server.hold('no JointState for 0.6 s', 0.0)  # a timeout hold counts
    assert server.modes.mode == 'active'
    step = server.step(JOINTS, nan, ZEROS, 0.0)
    assert server.modes.mode == 'estop' and 'consecutive fault holds' in server.modes.estop_reason
    assert np.allclose(step.command, good)  # frozen at the last measured pose
    # Latched: the faults clear, the model is reloaded, the node re-activated -> still e-stop.
    assert np.allclose(server.step(JOINTS, [0.3, 0.3, 0.3], ZEROS, 0.0).command, good)
    server.swap(ServedModel(server.model.path))
    server.activate()
    server.modes.restart()
    assert server.modes.mode == 'estop'
    assert not server.modes.request('active')[0]
    assert server.request_mode('reset_estop') == (True, 'e-stop reset: standby')


def test_joint_outside_limits_and_command_jump_latch_the_estop(tmp_path: Path) -> None:
    server = served(tmp_path, 'standby', estop_limit_margin=0.05)
    server.step(JOINTS, [2.04, 0.0, 0.0], ZEROS, 0.0)  # limits ±2, inside the margin
    assert server.modes.mode == 'standby'
    server.step(JOINTS, [2.06, 0.0, 0.0], ZEROS, 0.0)
    assert server.modes.mode == 'estop' and 'outside its limits' in server.modes.estop_reason

    server = served(tmp_path, 'active', estop_command_step=0.1)
    server.step(JOINTS, [0.0, 0.0, 0.0], ZEROS, 0.0)
    assert server.modes.mode == 'active' and not server.modes.handing_over
    # The linear policy's command moves with the state: a jump of the state jumps it.
    step = server.step(JOINTS, [1.5, -1.5, 1.5], ZEROS, 0.0)
    assert server.modes.mode == 'estop' and 'changed by' in server.modes.estop_reason
    assert 'e-stop' in step.fault and step.preview is not None
    assert np.allclose(step.command, [1.5, -1.5, 1.5])


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(start=st.lists(st.floats(-1.5, 1.5), min_size=3, max_size=3),
       seed=st.integers(0, 10_000), rate=st.floats(0.05, 5.0),
       control_mode=st.sampled_from(['position', 'velocity']),
       from_mode=st.sampled_from(['standby', 'hold']))
def test_handover_ramps_and_converges(tmp_path: Path, start: list[float], seed: int,
                                      rate: float, control_mode: str, from_mode: str) -> None:
    # A policy whose command does not depend on the state; the robot tracks every command.
    path = write_linear_policy(tmp_path / f'c{seed}{control_mode}.onnx', seed=seed,
                               control_mode=control_mode, weight_scale=0.0)
    server = PolicyServer()
    server.configure(ServedModel(str(path)))
    server.modes = SafetyModes(from_mode, SafetyLimits(handover_rate=rate))
    server.period = 0.02
    server.set_goal(lambda: GOAL)
    measured = np.array(start)
    previous = server.step(JOINTS, measured, ZEROS, 0.0).command
    target = server.model.policy.act(server.model.layout.fill(GOAL)).astype(np.float64)
    assert server.modes.request('active')[0]
    bound = rate * server.period
    needed = int(np.ceil(np.max(np.abs(target - previous)) / bound)) + 1
    for _ in range(needed):
        command = server.step(JOINTS, measured, ZEROS, 0.0).command
        assert np.max(np.abs(command - previous)) <= bound + 1e-9
        previous = command
        if control_mode == 'position':
            measured = command  # the robot goes where it is told
    assert np.allclose(previous, target) and not server.modes.handing_over
    after = server.step(JOINTS, measured, ZEROS, 0.0).command
    assert np.allclose(after, target)  # then it follows the policy


# ------------------------------------------------------------- random sequences of everything
FAULTS_TO_ESTOP = 3
RAMP = 0.5 * 0.02  # handover_rate × period
STEPS_RUN = [0]


class ModesMachine(RuleBasedStateMachine):
    """Requests, good and bad states, goal loss, reloads and re-activations in any order."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix='trpo_modes_'))
        self.model_path = str(write_linear_policy(self.dir / 'p.onnx'))
        self.server = PolicyServer()
        self.server.configure(ServedModel(self.model_path))
        self.server.modes = SafetyModes('standby', SafetyLimits(
            handover_rate=0.5, estop_after_faults=FAULTS_TO_ESTOP, estop_command_step=0.0))
        self.server.period = 0.02
        self.server.set_goal(lambda: GOAL)
        self.mode, self.faults = 'standby', 0
        self.measured: np.ndarray | None = None
        self.frozen: np.ndarray | None = None
        self.previous: np.ndarray | None = None

    def teardown(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def enter(self, mode: str) -> None:
        self.mode, self.faults = mode, 0
        self.frozen = None if self.measured is None else self.measured.copy()

    @rule(asked=st.sampled_from(REQUESTS))
    def request(self, asked: str) -> None:
        accepted, after = TRANSITIONS[self.mode, asked]
        ok, message = self.server.request_mode(asked)
        assert ok == accepted, message
        if ok and (after != self.mode or asked == 'reset_estop'):
            self.enter(after)
        assert self.server.modes.mode == self.mode

    @rule(pose=st.lists(st.floats(-1.5, 1.5), min_size=3, max_size=3),
          goal=st.booleans())
    def state(self, pose: list[float], goal: bool) -> None:
        if goal:
            self.server.set_goal(lambda: GOAL)
        else:
            self.server.goal = None  # waiting for a goal: a hold that is not a fault
        handing_over = self.server.modes.handing_over
        step = self.server.step(JOINTS, pose, ZEROS, 0.0)
        self.measured = np.array(pose)
        if self.mode == 'active' and goal:
            self.faults = 0
            if handing_over and self.previous is not None:
                assert np.max(np.abs(step.command - self.previous)) <= RAMP + 1e-9
        self.check(step, policy_ran=goal)

    @rule()
    def nan_state(self) -> None:
        step = self.server.step(JOINTS, [float('nan')] * 3, ZEROS, 0.0)
        if self.measured is None:
            assert step.command is None  # fail closed before the first complete state
            return
        if self.mode == 'active':
            self.faults += 1
            if self.faults >= FAULTS_TO_ESTOP:
                self.enter('estop')
        self.check(step, policy_ran=False)

    @rule()
    def reload(self) -> None:
        self.server.swap(ServedModel(self.model_path))

    @rule()
    def reactivate(self) -> None:  # lifecycle deactivate + activate
        self.server.modes.restart()
        self.server.activate()
        if self.mode != 'estop':
            self.enter('standby')
        self.measured = None

    def check(self, step: Any, policy_ran: bool) -> None:
        assert self.server.modes.mode == self.mode, (self.server.modes.mode, self.mode)
        if self.mode == 'standby' and self.measured is not None:
            assert np.allclose(step.command, self.measured)
        if self.mode in ('hold', 'estop'):
            if self.frozen is None:
                self.frozen = self.measured.copy()
            assert np.allclose(step.command, self.frozen)
        if self.mode != 'active' and policy_ran:
            assert step.preview is not None
        self.previous = step.command

    @invariant()
    def estop_is_latched(self) -> None:
        STEPS_RUN[0] += 1
        assert (self.server.modes.mode == 'estop') == (self.mode == 'estop')


def test_random_sequences_of_requests_and_faults() -> None:
    run_stateful(ModesMachine, examples=40, steps=60, steps_run=STEPS_RUN, minimum=1000)
