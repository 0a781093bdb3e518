"""
Serving a policy to a robot, without ROS: what inference_node decides at every control step.

:class:`ServedModel` is an exported policy checked for driving a robot, with its observation
layout. :class:`PolicyServer` holds the deployment state — the model, the goal, the robot's
URDF limits, the last complete joint state, the safety mode — and turns one joint state into
one command, or into the hold, or into nothing (fail closed: before the first complete state,
or while the robot's URDF has tighter limits than the model). The safety modes
(:mod:`trpo_ros.safety_modes`) decide whether the policy's command or a hold is sent, and the
one command filter limits every command. numpy + onnxruntime only; the node adds messages,
timers, logging and diagnostics.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from trpo_ros.robot import CommandFilter
from trpo_ros.robot.observation import (
    command_limits,
    ObservationError,
    ObservationLayout,
    urdf_joint_limits,
)
from trpo_ros.runtime import Policy, PolicyError
from trpo_ros.safety_modes import SafetyModes

WAITING_FOR_GOAL = 'waiting for a goal (goal topic or parameter)'
WAITING_FOR_OBJECT = 'waiting for an object pose (object topic)'


class ServedModel:
    """A loaded policy with its observation layout (swapped as one object on hot reload)."""

    def __init__(self, path: str) -> None:
        if not path:
            raise PolicyError('parameter model_path is empty')
        self.policy = Policy.load(path)
        if self.policy.control_mode not in ('position', 'velocity', 'torque'):
            raise PolicyError(f'{path}: control_mode {self.policy.control_mode!r} cannot drive '
                              'a robot (expected position, velocity or torque)')
        try:
            self.layout = ObservationLayout(self.policy.input_names, self.policy.joint_names)
        except ObservationError as exc:
            raise PolicyError(f'{path}: {exc}') from None
        self.path = str(Path(path).resolve())
        self.position_mode = self.policy.control_mode == 'position'
        self.low = self.policy.action_low.astype(np.float64)
        self.high = self.policy.action_high.astype(np.float64)
        self.position_limits = self._position_limits()

    def _position_limits(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Joint position limits: the command bounds in position mode, else the robot's."""
        if self.position_mode:
            return self.low, self.high
        robot = (self.policy.metadata.get('robot_config') or {}).get('robot') or {}
        given = robot.get('limits') or {}
        joints = self.policy.joint_names
        if not all(j in given and 'lower' in given[j] and 'upper' in given[j] for j in joints):
            return None
        return (np.array([given[j]['lower'] for j in joints], np.float64),
                np.array([given[j]['upper'] for j in joints], np.float64))

    def tighter_limits(self, urdf: str) -> tuple[str, np.ndarray, np.ndarray]:
        """
        Compare the robot's URDF limits with the model's command bounds.

        Returns (why they are tighter or '', low, high): the bounds both allow.
        """
        joints = self.policy.joint_names
        low, high = command_limits(urdf_joint_limits(urdf), joints, self.policy.control_mode)
        tight = [f'{j} [{lo:.4g}, {hi:.4g}] vs model [{ml:.4g}, {mh:.4g}]'
                 for j, lo, hi, ml, mh in zip(joints, low, high, self.low, self.high)
                 if lo > ml + 1e-3 or hi < mh - 1e-3]
        why = ('robot_description has tighter limits than the model: ' + '; '.join(tight[:4])
               if tight else '')
        return why, np.maximum(self.low, low), np.minimum(self.high, high)


@dataclass
class Step:
    """
    What one control step decided.

    `command` is what to send (None: send nothing); `fault` is why the step held ('' when the
    policy commanded or the mode holds), `severity` 'warn' or 'error' for a fault, `rejected`
    whether an input was rejected, `preview` the policy's command when the mode did not send
    it (standby, hold, e-stop).
    """

    command: np.ndarray | None
    fault: str = ''
    severity: str = ''
    rejected: bool = False
    preview: np.ndarray | None = None


class PolicyServer:
    """The deployment state of one served model (see the module docstring)."""

    def __init__(self) -> None:
        self.model: ServedModel | None = None
        self.goal: np.ndarray | None = None
        self.goal_error = ''
        self.object_pose: np.ndarray | None = None  # [x, y, z, qx, qy, qz, qw]
        self.object_time = 0.0  # time.monotonic() of its arrival
        self.object_error = ''
        self.object_timeout = 0.5  # s: an older object pose holds the arm
        self.accept_tighter_limits = False
        self.limits_error = ''  # why the robot's URDF refuses the model ('' = fine)
        self.hold_positions: np.ndarray | None = None  # None: no complete joint state yet
        self.modes = SafetyModes()
        self.period = 0.02  # s between control steps (the hand-over ramp's time base)
        self._description = ''
        self._filter: CommandFilter | None = None

    def configure(self, model: ServedModel) -> str:
        """Serve `model` from scratch (no previous command); returns a limits error or ''."""
        self.model = model
        self._filter = CommandFilter(model.low, model.high)
        return self.check_limits()

    def swap(self, model: ServedModel) -> str:
        """Hot-swap to `model` (same joints, else PolicyError); returns a limits error or ''."""
        if model.policy.joint_names != self.model.policy.joint_names:
            raise PolicyError(f'model not reloaded: {model.path} controls joints '
                              f'{model.policy.joint_names}, the served model '
                              f'{self.model.policy.joint_names}')
        self.model = model
        if self.modes.mode == 'active':
            self.modes.handing_over = True  # the new policy takes over smoothly
        return self.check_limits()

    def activate(self) -> None:
        """Fail closed again: no command until a complete joint state."""
        self.hold_positions = None

    def request_mode(self, name: str) -> tuple[bool, str]:
        """Ask the safety modes for `name`; hold and e-stop freeze at the newest measured pose."""
        return self.modes.request(name, self.hold_positions)

    def set_goal(self, parse: Callable[[], np.ndarray]) -> str:
        """Take the goal `parse()` returns; on ObservationError hold instead; returns the error."""
        try:
            self.goal, self.goal_error = parse(), ''
        except ObservationError as exc:
            self.goal, self.goal_error = None, f'rejected goal: {exc}'
        return self.goal_error

    def set_object_pose(self, parse: Callable[[], np.ndarray], now: float) -> str:
        """Take the object pose `parse()` returns (arrived at `now`); on error hold; the error."""
        try:
            self.object_pose, self.object_time, self.object_error = parse(), now, ''
        except ObservationError as exc:
            self.object_pose, self.object_error = None, f'rejected object pose: {exc}'
        return self.object_error

    def _object_fault(self, now: float) -> tuple[str, str]:
        """(why the object pose cannot be used, severity), or ('', '') when it can."""
        if self.object_pose is None:
            return (self.object_error, 'error') if self.object_error else \
                (WAITING_FOR_OBJECT, 'warn')
        age = now - self.object_time
        if age > self.object_timeout:
            return (f'object pose is stale ({age:.2f} s old > object_timeout '
                    f'{self.object_timeout:g} s)', 'error')
        return '', ''

    def set_description(self, urdf: str) -> str:
        """Take the robot's URDF (robot_description); returns a limits error or ''."""
        self._description = urdf
        return self.check_limits()

    def check_limits(self) -> str:
        """Compare the robot's URDF with the model; returns why serving is refused, or ''."""
        model, self.limits_error, bounds = self.model, '', None
        if model is not None and self._description:
            try:
                why, low, high = model.tighter_limits(self._description)
            except ObservationError as exc:
                why, low, high = str(exc), model.low, model.high
            if why and not self.accept_tighter_limits:
                self.limits_error = why
            else:
                bounds = (low, high)
        if self._filter is not None and model is not None:
            self._filter.low, self._filter.high = bounds or (model.low, model.high)
        return self.limits_error

    def step(self, names: Sequence[str], position: Any, velocity: Any,
             max_delta: float, now: float = 0.0) -> Step:
        """
        One control step for one joint state: the policy's command, the hold or nothing.

        `now` (time.monotonic()) dates the step for the object pose's staleness check.
        """
        model = self.model
        layout = model.layout
        try:
            layout.read_state(names, position, velocity)
        except ObservationError as exc:
            return self.hold(f'rejected JointState: {exc}', max_delta, rejected=True)
        self.hold_positions = layout.controlled_positions().copy()
        if model.position_limits is not None:
            self.modes.check_measured(self.hold_positions, *model.position_limits)
        if self.limits_error:
            return self.hold(self.limits_error, max_delta)
        if layout.needs_goal and self.goal is None:
            return self.hold(self.goal_error or WAITING_FOR_GOAL, max_delta,
                             severity='error' if self.goal_error else 'warn')
        if layout.needs_object:
            fault, severity = self._object_fault(now)
            if fault:
                return self.hold(fault, max_delta, severity=severity)
        try:
            command = model.policy.act(layout.fill(self.goal, self.object_pose))
        except (ObservationError, PolicyError) as exc:
            return self.hold(str(exc), max_delta, rejected=True)
        if self.modes.mode != 'active':
            return self._mode_hold(max_delta, preview=self._clip(command))
        return self._command(command, max_delta)

    def hold(self, reason: str, max_delta: float, severity: str = 'error',
             rejected: bool = False) -> Step:
        """Return the hold for a fault (the mode's hold outside active); None failing closed."""
        if self.hold_positions is None or self.limits_error:
            return Step(None, reason, severity, rejected)
        if self.modes.mode != 'active':
            return self._mode_hold(max_delta, reason, severity, rejected)
        step = Step(self._filtered(self._pose_or_zeros(self.hold_positions), max_delta),
                    reason, severity, rejected)
        self.modes.after_step(reason, severity, handed_over=False)
        if self.modes.mode == 'estop':  # that fault was one too many
            return self._mode_hold(max_delta, reason, severity, rejected)
        return step

    def _command(self, command: np.ndarray, max_delta: float) -> Step:
        """Active: the policy's command, ramped while handing over; an e-stop on a jump."""
        target = self._clip(command)
        if self._filter.previous is None and self.modes.handing_over:
            self._filter.previous = self._pose_or_zeros(self.hold_positions)
        jump = self.modes.command_jump(target, self._filter.previous)
        if jump:
            return self._mode_hold(max_delta, f'e-stop: {jump}', 'error', preview=target)
        ramp = self.modes.handover_step(self.period)
        limit = min(ramp, max_delta) if ramp and max_delta else ramp or max_delta
        out = self._filtered(target, limit)
        self.modes.after_step('', '', handed_over=bool(np.array_equal(out, target)))
        return Step(out)

    def _mode_hold(self, max_delta: float, fault: str = '', severity: str = '',
                   rejected: bool = False, preview: np.ndarray | None = None) -> Step:
        """Standby: the newest measured pose; hold and e-stop: the frozen pose, at once."""
        if self.modes.mode == 'standby':
            out = self._filtered(self._pose_or_zeros(self.hold_positions), max_delta)
        else:
            target = self._pose_or_zeros(self.modes.freeze_at(self.hold_positions))
            self._filter.reset()  # takes effect within this step, whatever max_delta says
            out = self._filtered(target, 0.0)
        return Step(out, fault, severity, rejected, preview)

    def _pose_or_zeros(self, positions: np.ndarray) -> np.ndarray:
        if self.model.position_mode:
            return np.asarray(positions, np.float64)
        return np.zeros(self.model.policy.action_dim)

    def _clip(self, command: np.ndarray) -> np.ndarray:
        return np.clip(np.asarray(command, np.float64), self._filter.low, self._filter.high)

    def _filtered(self, command: np.ndarray, max_delta: float) -> np.ndarray:
        self._filter.max_delta = float(max_delta)
        return self._filter(command).command
