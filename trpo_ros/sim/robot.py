"""
A URDF arm inside its own PyBullet physics client (p.DIRECT, never the global client).

`Robot` loads the URDF of a `trpo_ros.robot.RobotSpec` (which says which joints are
controlled, their limits and the end effector) and owns motor commands, state reads,
self-collision checks and dynamics randomization. It knows nothing about tasks or rewards;
`ReachEnv` builds on it.

Speed notes: every pybullet call passes `physicsClientId` directly (no BulletClient
`__getattr__`/partial per call), joint state is read with one `getJointStates`, and the
self-collision check is one `getContactPoints(robot, robot)` after the last physics sub-step
of a control step. Link pairs that always touch (kinematically adjacent, or in contact at the
home pose, like MoveIt's "adjacent"/"default" disabled pairs) are removed from collision
detection with `setCollisionFilterPair`, so any contact that remains is a real self-collision.
"""

from __future__ import annotations

from collections.abc import Sequence
import os
import tempfile

import numpy as np
import pybullet as p
import pybullet_data
from trpo_ros.robot.config import CONTROL_MODES, RobotConfigError
from trpo_ros.robot.spec import mesh_search_dirs, resolve_mesh_paths, RobotSpec

SELF_COLLISION_DISTANCE = 0.0  # m: contact points closer than this are collisions
REFERENCE_DAMPING = 0.1  # N*m*s/rad: damping randomized around this when the URDF has none
_MOVABLE_PB_TYPES = (p.JOINT_REVOLUTE, p.JOINT_PRISMATIC)


class Robot:
    """
    A fixed-base URDF arm in its own pybullet DIRECT client.

    Parameters
    ----------
    spec
        the arm (URDF, controlled joints, limits, end effector, base pose); the URDF that
        PyBullet loads must have those joints movable and that link.
    self_collision
        simulate collisions between the robot's own links and report them.
    ground_plane
        load pybullet_data's plane.urdf at z = 0.
    gravity
        world gravity along z (m/s^2).
    physics_rate_hz
        physics time step is 1 / physics_rate_hz.

    """

    def __init__(
        self,
        spec: RobotSpec,
        self_collision: bool = True,
        ground_plane: bool = True,
        gravity: float = -9.81,
        physics_rate_hz: float = 240.0,
    ) -> None:
        self.spec = spec
        self.urdf_text, self.urdf_origin = spec.urdf_text, spec.urdf_origin
        self.joint_names, self.n_joints = list(spec.joint_names), spec.n_joints
        self.lower, self.upper = spec.lower, spec.upper
        self.velocity_limits, self.effort_limits = spec.velocity_limits, spec.effort_limits
        self._efforts = self.effort_limits.tolist()
        self.ee_link, self.base_link, self.fk_chain = spec.ee_link, spec.base_link, spec.fk_chain
        self.base_position, self.base_orientation = spec.base_position, spec.base_orientation

        self.client = p.connect(p.DIRECT)
        if self.client < 0:
            raise RuntimeError('could not start a pybullet DIRECT client')
        cid = self.client
        p.setAdditionalSearchPath(pybullet_data.getDataPath(), physicsClientId=cid)
        p.setTimeStep(1.0 / physics_rate_hz, physicsClientId=cid)
        p.setGravity(0.0, 0.0, gravity, physicsClientId=cid)
        flags = p.URDF_USE_SELF_COLLISION | p.URDF_USE_SELF_COLLISION_EXCLUDE_PARENT \
            if self_collision else 0
        self.body = self._load(flags)
        if ground_plane:
            p.loadURDF('plane.urdf', physicsClientId=cid)

        infos = [p.getJointInfo(self.body, i, physicsClientId=cid)
                 for i in range(p.getNumJoints(self.body, physicsClientId=cid))]
        self.link_index = {info[12].decode(): info[0] for info in infos}
        self.link_index[self.base_link] = -1
        self.parent_index = {info[0]: info[16] for info in infos}
        self._infos = infos
        by_name = {info[1].decode(): info for info in infos}
        unusable = [n for n in self.joint_names
                    if n not in by_name or by_name[n][2] not in _MOVABLE_PB_TYPES]
        if unusable or self.ee_link not in self.link_index:
            raise RobotConfigError(f'{self.urdf_origin}: PyBullet loads no movable joints '
                                   f'{unusable} or no link {self.ee_link!r}')
        self.joint_indices = [by_name[n][0] for n in self.joint_names]
        self.ee_index = self.link_index[self.ee_link]

        self.self_collision = self_collision
        self.nominal_masses = [p.getDynamicsInfo(self.body, i, physicsClientId=cid)[0]
                               for i in range(-1, len(infos))]
        self.nominal_damping = np.array([infos[i][6] for i in self.joint_indices])
        self.nominal_friction = np.array([infos[i][7] for i in self.joint_indices])
        self.friction = np.zeros(self.n_joints)
        # Uncontrolled movable joints (e.g. Panda fingers) go back to their load state on reset.
        self._passive = [info[0] for info in infos if info[2] in _MOVABLE_PB_TYPES
                         and info[0] not in self.joint_indices]
        self._passive_rest = [p.getJointState(self.body, i, physicsClientId=cid)[0]
                              for i in self._passive]
        self.control_mode = 'position'
        # Hooks kept as attributes so a benchmark can wrap them to time physics alone.
        self.physics_step = p.stepSimulation
        self._gains: list[float] = []

    # ------------------------------------------------------------------ loading
    def portable_urdf(self) -> str:
        """Return the URDF text with its mesh file names made absolute (loadable from here)."""
        return self.spec.portable_urdf()

    def _load(self, flags: int) -> int:
        spec, cid = self.spec, self.client
        kwargs = {'basePosition': self.base_position, 'baseOrientation': self.base_orientation,
                  'useFixedBase': True, 'flags': flags, 'physicsClientId': cid}
        if spec.urdf_path is not None:
            body = p.loadURDF(str(spec.urdf_path), **kwargs)
        else:
            text = resolve_mesh_paths(spec.urdf_text, mesh_search_dirs(spec.mesh_dirs))
            fd, tmp = tempfile.mkstemp(suffix='.urdf', prefix='trpo_ros_')
            try:
                with os.fdopen(fd, 'w') as handle:
                    handle.write(text)
                body = p.loadURDF(tmp, **kwargs)
            finally:
                os.unlink(tmp)
        if body < 0:
            raise RobotConfigError(f'pybullet could not load URDF {self.urdf_origin}')
        return body

    # ------------------------------------------------------------------ collisions
    def disable_default_collisions(self) -> list[tuple[int, int]]:
        """
        Stop detecting link pairs that touch by construction; returns the disabled pairs.

        Disabled: pairs joined through at most one movable joint (fixed joints merged) and
        pairs in contact in the current (home) configuration.
        """
        if not self.self_collision:
            return []
        cid, body = self.client, self.body
        links = [-1, *range(len(self._infos))]
        movable = {info[0] for info in self._infos if info[2] != p.JOINT_FIXED}

        def up(link: int) -> dict[int, int]:
            # ancestor -> number of movable joints between `link` and it (nearest first)
            hops, seen = 0, {link: 0}
            while link != -1:
                hops += link in movable
                link = self.parent_index[link]
                seen[link] = hops
            return seen

        pairs: set[tuple[int, int]] = set()
        for a in links:
            up_a = up(a)
            for b in links:
                if b > a:
                    up_b = up(b)
                    common = next(anc for anc in up_a if anc in up_b)
                    if up_a[common] + up_b[common] <= 1:
                        pairs.add((a, b))
        p.performCollisionDetection(physicsClientId=cid)
        for contact in p.getContactPoints(body, body, physicsClientId=cid):
            pairs.add(tuple(sorted((contact[3], contact[4]))))
        for a, b in sorted(pairs):
            p.setCollisionFilterPair(body, body, a, b, 0, physicsClientId=cid)
        self.disabled_pairs = sorted(pairs)
        return self.disabled_pairs

    def self_collision_pairs(self) -> list[tuple[str, str]]:
        """Link name pairs in contact after the last physics step (disabled pairs excluded)."""
        names = {v: k for k, v in self.link_index.items()}
        contacts = p.getContactPoints(self.body, self.body, physicsClientId=self.client)
        return sorted({(names[c[3]], names[c[4]]) for c in contacts
                       if c[8] < SELF_COLLISION_DISTANCE})

    def in_self_collision(self) -> bool:
        """Tell whether any two of the robot's links touched in the last physics step."""
        if not self.self_collision:
            return False
        contacts = p.getContactPoints(self.body, self.body, physicsClientId=self.client)
        return any(c[8] < SELF_COLLISION_DISTANCE for c in contacts)

    # ------------------------------------------------------------------ control
    def set_control_mode(self, mode: str, position_gain: float = 0.5) -> None:
        """Select the pybullet motor mode; torque mode disables the default velocity motors."""
        if mode not in CONTROL_MODES:
            raise RobotConfigError(f'unknown control mode {mode!r} (choose from {CONTROL_MODES})')
        self.control_mode = mode
        self._gains = [float(position_gain)] * self.n_joints
        # Cap joint speeds at the velocity limits (keeps torque-mode soft limits effective).
        for i, v in zip(self.joint_indices, self.velocity_limits, strict=True):
            p.changeDynamics(self.body, i, maxJointVelocity=float(v), physicsClientId=self.client)
        if mode == 'torque':
            self._release_motors()

    def _release_motors(self) -> None:
        # A velocity motor with target 0 and force = joint friction acts as Coulomb friction.
        p.setJointMotorControlArray(
            self.body, self.joint_indices, p.VELOCITY_CONTROL,
            targetVelocities=[0.0] * self.n_joints, forces=self.friction.tolist(),
            physicsClientId=self.client)

    def command(self, values: np.ndarray, q: np.ndarray | None = None,
                qd: np.ndarray | None = None, dt: float = 0.02) -> None:
        """
        Send one motor command in physical units: positions (rad), velocities or torques.

        Position targets are clipped to the joint limits, velocities to the velocity limits,
        torques to the effort limits. Given the current state `q`, `qd`, velocity targets are
        also limited so that `q + v * dt` stays inside the position limits, and in torque mode
        a joint predicted to pass a limit within `dt` gets a spring-damper torque back towards
        it (a soft limit: overshoot stays within a few 0.01 rad at full effort).
        """
        cid, body, idx = self.client, self.body, self.joint_indices
        mode = self.control_mode
        if mode in ('position', 'position_delta'):
            target = np.clip(values, self.lower, self.upper).tolist()
            p.setJointMotorControlArray(body, idx, p.POSITION_CONTROL, targetPositions=target,
                                        forces=self._efforts, positionGains=self._gains,
                                        physicsClientId=cid)
        elif mode == 'velocity':
            low, high = -self.velocity_limits, self.velocity_limits
            if q is not None:
                low = np.maximum(low, np.minimum((self.lower - q) / dt, 0.0))
                high = np.minimum(high, np.maximum((self.upper - q) / dt, 0.0))
            p.setJointMotorControlArray(body, idx, p.VELOCITY_CONTROL,
                                        targetVelocities=np.clip(values, low, high).tolist(),
                                        forces=self._efforts, physicsClientId=cid)
        else:
            torque = np.asarray(values, dtype=np.float64)
            if q is not None and qd is not None:
                ahead = q + qd * dt  # where the joint will be after one control period
                over, under = ahead > self.upper, ahead < self.lower
                if over.any() or under.any():
                    stiff, damp = self.effort_limits / 0.05, self.effort_limits / 2.0
                    edge = np.where(over, self.upper, self.lower)
                    back = stiff * (edge - ahead) - damp * qd
                    torque = np.where(over, np.minimum(torque, back), torque)
                    torque = np.where(under, np.maximum(torque, back), torque)
            torque = np.clip(torque, -self.effort_limits, self.effort_limits).tolist()
            p.setJointMotorControlArray(body, idx, p.TORQUE_CONTROL, forces=torque,
                                        physicsClientId=cid)

    def step_physics(self, substeps: int) -> None:
        """Advance the simulation by `substeps` physics steps."""
        step, cid = self.physics_step, self.client
        for _ in range(substeps):
            step(physicsClientId=cid)

    # ------------------------------------------------------------------ state
    def joint_state(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Positions, velocities and applied motor efforts of the controlled joints."""
        states = p.getJointStates(self.body, self.joint_indices, physicsClientId=self.client)
        arr = np.array([s[0:2] + (s[3],) for s in states])
        return arr[:, 0], arr[:, 1], arr[:, 2]

    def positions_velocities(self) -> np.ndarray:
        """(2, n) array: row 0 joint positions, row 1 joint velocities."""
        states = p.getJointStates(self.body, self.joint_indices, physicsClientId=self.client)
        return np.array([s[0:2] for s in states]).T

    def ee_position(self) -> np.ndarray:
        """World position of the end-effector URDF link frame (m)."""
        state = p.getLinkState(self.body, self.ee_index, computeForwardKinematics=True,
                               physicsClientId=self.client)
        return np.array(state[4])

    def reset_joints(self, positions: Sequence[float],
                     velocities: Sequence[float] | None = None) -> None:
        """Teleport the controlled joints and make the motors hold the new state."""
        vel = np.zeros(self.n_joints) if velocities is None else np.asarray(velocities, float)
        pos = np.asarray(positions, dtype=float)
        if pos.shape != (self.n_joints,) or vel.shape != (self.n_joints,):
            raise ValueError(f'expected {self.n_joints} joint positions/velocities')
        for i, q, qd in zip(self.joint_indices, pos, vel, strict=True):
            p.resetJointState(self.body, i, float(q), float(qd), physicsClientId=self.client)
        for i, q in zip(self._passive, self._passive_rest, strict=True):
            p.resetJointState(self.body, i, q, 0.0, physicsClientId=self.client)
        if self.control_mode in ('position', 'position_delta'):
            self.command(pos)
        elif self.control_mode == 'velocity':
            self.command(np.zeros(self.n_joints))
        else:
            self._release_motors()

    # ------------------------------------------------------------------ randomization
    def randomize_dynamics(
        self,
        rng: np.random.Generator,
        mass_scale_range: Sequence[float] | None = None,
        damping_scale_range: Sequence[float] | None = None,
        friction_scale_range: Sequence[float] | None = None,
    ) -> None:
        """
        Scale link masses and joint damping/friction by factors drawn from `rng`.

        Damping is scaled around the URDF value (or REFERENCE_DAMPING when that is 0). Joint
        friction (around the URDF value, or 1 % of the effort limit) acts only in torque mode,
        as a velocity motor with target 0; in position/velocity modes the motor dominates.
        """
        cid, body = self.client, self.body
        if mass_scale_range is not None:
            scales = rng.uniform(*mass_scale_range, size=len(self.nominal_masses))
            for link, (mass, scale) in enumerate(zip(self.nominal_masses, scales, strict=True)):
                if mass > 0:
                    p.changeDynamics(body, link - 1, mass=mass * scale, physicsClientId=cid)
        if damping_scale_range is not None:
            base = np.where(self.nominal_damping > 0, self.nominal_damping, REFERENCE_DAMPING)
            damping = base * rng.uniform(*damping_scale_range, size=self.n_joints)
            for i, d in zip(self.joint_indices, damping, strict=True):
                p.changeDynamics(body, i, jointDamping=float(d), physicsClientId=cid)
        if friction_scale_range is not None:
            base = np.where(self.nominal_friction > 0, self.nominal_friction,
                            0.01 * self.effort_limits)
            self.friction = base * rng.uniform(*friction_scale_range, size=self.n_joints)

    def close(self) -> None:
        """Disconnect the physics client (idempotent)."""
        if self.client >= 0:
            try:
                p.disconnect(physicsClientId=self.client)
            except p.error:
                pass
            self.client = -1
