"""
A policy's observation on a robot (numpy only): joint states by name, goal, object, limits.

:class:`ObservationLayout` builds the exported model's input from a JointState's arrays (mapped
by joint name), a goal and, for tasks with an object, the object's pose;
:func:`urdf_joint_limits` and :func:`command_limits` read the limits a robot's URDF declares,
to compare with the model's.
"""

from __future__ import annotations

import array
from collections.abc import Mapping, Sequence
import math
from typing import Any
import xml.etree.ElementTree as ET

import numpy as np
from trpo_ros.errors import UserError
from trpo_ros.robot.kinematics import canonical_quaternion

GOAL_AXES = ('x', 'y', 'z')
# An object pose as the layout takes it: position x, y, z then quaternion x, y, z, w.
OBJECT_COLUMNS = tuple([f'object_pos/{a}' for a in 'xyz'] + [f'object_quat/{a}' for a in 'xyzw'])


class ObservationError(UserError):
    """A state or goal that cannot be turned into an observation; the message says why."""


class ObservationLayout:
    """
    Builds a policy observation from a JointState (mapped by joint name), a goal and a pose.

    Input names understood: ``joint_pos/<joint>``, ``joint_vel/<joint>``, ``goal/x|y|z``,
    ``object_pos/x|y|z`` and ``object_quat/x|y|z|w`` (the object pose, see `OBJECT_COLUMNS`).
    Index maps are precomputed; :meth:`fill` writes into one reused float32 buffer.
    """

    def __init__(self, input_names: Sequence[str], joint_names: Sequence[str]) -> None:
        self.input_names = list(input_names)
        self.joint_names = list(joint_names)
        state_joints: list[str] = []  # joints needed from the JointState, first-use order
        pos_slots, pos_src, vel_slots, vel_src, goal_slots, goal_src = [], [], [], [], [], []
        object_slots, object_src = [], []
        for slot, name in enumerate(self.input_names):
            kind, _, what = name.partition('/')
            if kind in ('joint_pos', 'joint_vel') and what:
                if what not in state_joints:
                    state_joints.append(what)
                src = state_joints.index(what)
                (pos_slots if kind == 'joint_pos' else vel_slots).append(slot)
                (pos_src if kind == 'joint_pos' else vel_src).append(src)
            elif kind == 'goal' and what in GOAL_AXES:
                goal_slots.append(slot)
                goal_src.append(GOAL_AXES.index(what))
            elif name in OBJECT_COLUMNS:
                object_slots.append(slot)
                object_src.append(OBJECT_COLUMNS.index(name))
            else:
                raise ObservationError(
                    f'policy input {name!r} cannot be built from a JointState, a goal and an '
                    "object pose (expected 'joint_pos/<joint>', 'joint_vel/<joint>', "
                    "'goal/x|y|z', 'object_pos/x|y|z' or 'object_quat/x|y|z|w')")
        for joint in self.joint_names:  # hold positions need every controlled joint
            if joint not in state_joints:
                state_joints.append(joint)
        self.state_joints = state_joints
        self.needs_goal = bool(goal_slots)
        self.needs_object = bool(object_slots)
        self._object_slots = np.array(object_slots, np.intp)
        self._object_src = np.array(object_src, np.intp)
        self.needs_velocity = bool(vel_slots)
        self._pos_slots = np.array(pos_slots, np.intp)
        self._pos_src = np.array(pos_src, np.intp)
        self._vel_slots = np.array(vel_slots, np.intp)
        self._vel_src = np.array(vel_src, np.intp)
        self._goal_slots = np.array(goal_slots, np.intp)
        self._goal_src = np.array(goal_src, np.intp)
        self._ctrl_src = np.array([state_joints.index(j) for j in self.joint_names], np.intp)
        self.obs = np.zeros(len(self.input_names), np.float32)
        self.positions = np.zeros(len(state_joints), np.float64)   # state_joints order
        self.velocities = np.zeros(len(state_joints), np.float64)
        self._names_key: tuple[str, ...] | None = None
        self._perm = np.zeros(len(state_joints), np.intp)
        self._perm_error = ''

    def _map_names(self, names: Sequence[str]) -> None:
        key = tuple(names)
        self._names_key = key
        index = {n: i for i, n in enumerate(key)}
        if len(index) != len(key):
            self._perm_error = f'JointState names a joint twice ({_some(key)})'
            return
        missing = [j for j in self.state_joints if j not in index]
        if missing:
            self._perm_error = (f'JointState lacks joint(s) {", ".join(missing)}; '
                                f'the robot publishes {_some(key)}')
            return
        self._perm_error = ''
        self._perm = np.array([index[j] for j in self.state_joints], np.intp)

    def read_state(self, names: Sequence[str], position: Any, velocity: Any) -> None:
        """
        Copy positions/velocities of the needed joints (by name) into the layout buffers.

        Raises
        ------
            ObservationError: a missing joint, a short position/velocity array, or NaN/Inf.

        """
        if self._names_key is None or len(names) != len(self._names_key) \
                or tuple(names) != self._names_key:
            self._map_names(names)
        if self._perm_error:
            raise ObservationError(self._perm_error)
        n = len(self._names_key)
        pos = np.frombuffer(position, np.float64) if isinstance(position, array.array) \
            else np.asarray(position, np.float64)
        if pos.shape[0] != n:
            raise ObservationError(f'JointState has {n} names but {pos.shape[0]} positions')
        np.take(pos, self._perm, out=self.positions)
        if self.needs_velocity:
            vel = np.frombuffer(velocity, np.float64) if isinstance(velocity, array.array) \
                else np.asarray(velocity, np.float64)
            if vel.shape[0] != n:
                raise ObservationError(f'JointState has {n} names but {vel.shape[0]} velocities')
            np.take(vel, self._perm, out=self.velocities)
        if not math.isfinite(self.positions.sum() + self.velocities.sum()):
            bad = [self.state_joints[i] for i in np.flatnonzero(
                ~np.isfinite(self.positions) | ~np.isfinite(self.velocities))]
            raise ObservationError(f'JointState has NaN/Inf for {", ".join(bad)}')

    def fill(self, goal: np.ndarray | None, object_pose: np.ndarray | None = None) -> np.ndarray:
        """Build the observation (reused buffer): last :meth:`read_state`, `goal`, object."""
        obs = self.obs
        if self.needs_object:
            if object_pose is None:
                raise ObservationError('no object pose yet (object topic)')
            obs[self._object_slots] = object_pose[self._object_src]
        obs[self._pos_slots] = self.positions[self._pos_src]
        if self.needs_velocity:
            obs[self._vel_slots] = self.velocities[self._vel_src]
        if self.needs_goal:
            if goal is None:
                raise ObservationError('no goal yet (topic or goal parameter)')
            obs[self._goal_slots] = goal[self._goal_src]
        return obs

    def controlled_positions(self) -> np.ndarray:
        """Positions of the controlled joints (action order) from the last state read."""
        return self.positions[self._ctrl_src]


def _some(names: Sequence[str], limit: int = 12) -> str:
    """`names` for a log line: at most `limit` of them (a JointState may carry 10^6)."""
    shown = ', '.join(repr(str(n)[:40]) for n in names[:limit])
    more = len(names) - limit
    return f'[{shown}{f", ... {more} more" if more > 0 else ""}]'


def validate_goal(values: Any) -> np.ndarray:
    """Check a goal: a finite [x, y, z] float64 array (ObservationError otherwise)."""
    try:
        goal = np.asarray(values, np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise ObservationError(f'goal {values!r} is not a list of numbers') from None
    if goal.shape != (3,):
        raise ObservationError(f'goal has {goal.size} values, expected 3 [x, y, z]')
    if not np.isfinite(goal).all():
        raise ObservationError('goal contains NaN/Inf')
    return goal


def validate_object_pose(position: Any, quaternion: Any) -> np.ndarray:
    """
    Check an object pose; return [x, y, z, qx, qy, qz, qw] with a unit quaternion, qw >= 0.

    Raises ObservationError for NaN/Inf, wrong sizes or a zero quaternion.
    """
    try:
        pos = np.asarray(position, np.float64).reshape(-1)
        quat = np.asarray(quaternion, np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise ObservationError('object pose is not numbers') from None
    if pos.shape != (3,) or quat.shape != (4,):
        raise ObservationError(f'object pose has {pos.size} position and {quat.size} '
                               'orientation values, expected 3 and 4')
    if not (np.isfinite(pos).all() and np.isfinite(quat).all()):
        raise ObservationError('object pose contains NaN/Inf')
    if float(np.linalg.norm(quat)) < 1e-6:
        raise ObservationError('object orientation is a zero quaternion')
    return np.concatenate([pos, canonical_quaternion(quat)])


def urdf_joint_limits(text: str) -> dict[str, dict[str, float]]:
    """
    Joint limits of a URDF: {joint: {'lower', 'upper', 'velocity', 'effort'}} (those given).

    Missing attributes, and velocity/effort values <= 0 (URDF's "unset"), are left out.
    Raises ObservationError on text that is not URDF XML.
    """
    try:
        root = ET.fromstring(text.encode())
    except ET.ParseError as exc:
        raise ObservationError(f'robot_description is not URDF XML ({exc})') from None
    limits: dict[str, dict[str, float]] = {}
    for joint in root.iter('joint'):
        element = joint.find('limit')
        if element is None or joint.get('type') not in ('revolute', 'prismatic', 'continuous'):
            continue
        values = {}
        for key in ('lower', 'upper', 'velocity', 'effort'):
            try:
                value = float(element.get(key, 'nan'))
            except ValueError:
                continue
            if math.isfinite(value) and (key in ('lower', 'upper') or value > 0):
                values[key] = value
        if joint.get('type') == 'continuous':
            values.pop('lower', None), values.pop('upper', None)
        limits[str(joint.get('name'))] = values
    return limits


def command_limits(limits: Mapping[str, Mapping[str, float]], joints: Sequence[str],
                   control_mode: str) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) command bounds for `joints` that URDF `limits` imply (±inf where unset)."""
    low = np.full(len(joints), -np.inf)
    high = np.full(len(joints), np.inf)
    for i, joint in enumerate(joints):
        given = limits.get(joint, {})
        if control_mode == 'position':
            low[i], high[i] = given.get('lower', -np.inf), given.get('upper', np.inf)
        else:
            bound = given.get('velocity' if control_mode == 'velocity' else 'effort', np.inf)
            low[i], high[i] = -bound, bound
    return low, high
