"""Push task for a URDF arm: push a cube across a table to a goal (PyBullet)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pybullet as p
from trpo_ros.robot.kinematics import canonical_quaternion
from trpo_ros.robot.push_task import push_task, PushTask
from trpo_ros.sim.reach_env import ReachEnv

TABLE_HALF_EXTENTS = (0.2, 0.35)  # m, x and y: at least this large
TABLE_MARGIN = 0.1  # m around the object and goal regions
TABLE_COLOR = (0.55, 0.45, 0.35, 1.0)
OBJECT_COLOR = (0.85, 0.25, 0.2, 1.0)


class PushEnv(ReachEnv):
    """
    Push a cube on a table to a goal on the table (the YAML's `PushTask`, ``self.task``).

    The arm, its commands, latency, noise and dynamics randomization are those of `ReachEnv`
    (same constructor arguments); the task adds a static table and a cube whose size, mass and
    friction are drawn per episode when the YAML gives ranges. `info` has ``distance``
    (object -> goal, m), ``ee_distance``, ``is_success``, the reward terms and
    ``self_collision``. ``options={'goal': xyz, 'object': (x, y)}`` fixes the goal and the
    cube's start at reset.
    """

    default_yaml = 'kuka_push.yaml'

    def __init__(self, robot_yaml: Any = None, velocity_penalty: float = 0.0,
                 push_offset: float | None = None, push_height: float | None = None,
                 ee_object_weight: float | None = None, object_goal_weight: float | None = None,
                 success_bonus: float | None = None, **kwargs: Any) -> None:
        # Reward settings over the YAML's (None keeps the YAML's value).
        self._reward = {'push_offset': push_offset, 'push_height': push_height,
                        'ee_object_weight': ee_object_weight,
                        'object_goal_weight': object_goal_weight,
                        'success_bonus': success_bonus}
        self._object = -1
        super().__init__(robot_yaml, velocity_penalty=velocity_penalty, **kwargs)

    def _build_task(self, robot_yaml: Any, **kwargs: Any) -> PushTask:
        return push_task(robot_yaml, **kwargs, **self._reward)

    def _setup(self, position_gain: float) -> None:
        super()._setup(position_gain)
        task: PushTask = self.task
        cid = self.robot.client
        low = np.minimum(task.object_low, task.goal_low[:2])
        high = np.maximum(task.object_high, task.goal_high[:2])
        half_xy = np.maximum(TABLE_HALF_EXTENTS, (high - low) / 2.0 + TABLE_MARGIN)
        half = (*half_xy.tolist(), task.table_height / 2.0)
        table = p.createCollisionShape(p.GEOM_BOX, halfExtents=half, physicsClientId=cid)
        visual = p.createVisualShape(p.GEOM_BOX, halfExtents=half, rgbaColor=TABLE_COLOR,
                                     physicsClientId=cid)
        self._table = p.createMultiBody(0.0, table, visual,
                                        basePosition=(*((low + high) / 2.0), half[2]),
                                        physicsClientId=cid)
        self._object_size = task.object_size
        self._object_pos = np.array([*task.object_low, task.resting_z()])
        self._object_quat = np.array([0.0, 0.0, 0.0, 1.0])

    def _make_object(self, size: float) -> None:
        """(Re)create the cube with edge `size` (a size change needs a new shape)."""
        cid = self.robot.client
        if self._object >= 0:
            p.removeBody(self._object, physicsClientId=cid)
        half = [size / 2.0] * 3
        shape = p.createCollisionShape(p.GEOM_BOX, halfExtents=half, physicsClientId=cid)
        visual = p.createVisualShape(p.GEOM_BOX, halfExtents=half, rgbaColor=OBJECT_COLOR,
                                     physicsClientId=cid)
        self._object = p.createMultiBody(self.task.object_mass, shape, visual,
                                         physicsClientId=cid)
        self._object_size = size

    def _reset_scene(self, rng: np.random.Generator, options: dict) -> None:
        """Draw the cube's size, mass, friction and start pose; put it at rest on the table."""
        task: PushTask = self.task
        cid = self.robot.client

        def draw(nominal: float, scale: tuple[float, float] | None) -> float:
            return nominal if scale is None else nominal * float(rng.uniform(*scale))

        size = draw(task.object_size, task.object_size_range)
        if self._object < 0 or size != self._object_size:
            self._make_object(size)
        p.changeDynamics(self._object, -1, mass=draw(task.object_mass, task.object_mass_range),
                         lateralFriction=draw(task.object_friction, task.object_friction_range),
                         physicsClientId=cid)
        start = options.get('object')
        xy = np.asarray(start, np.float64) if start is not None else \
            rng.uniform(task.object_low, task.object_high)
        yaw = float(rng.uniform(-np.pi, np.pi))
        p.resetBasePositionAndOrientation(self._object, [*xy, task.resting_z(size)],
                                          p.getQuaternionFromEuler((0.0, 0.0, yaw)),
                                          physicsClientId=cid)
        p.resetBaseVelocity(self._object, [0.0] * 3, [0.0] * 3, physicsClientId=cid)
        goal = self._goal.copy()
        goal[2] = task.resting_z(size)
        self.set_goal(goal)
        self._read_object()

    def _read_state(self) -> None:
        super()._read_state()
        if self._object >= 0:
            self._read_object()

    def _read_object(self) -> None:
        pos, quat = p.getBasePositionAndOrientation(self._object,
                                                    physicsClientId=self.robot.client)
        self._object_pos = np.asarray(pos, np.float64)
        self._object_quat = canonical_quaternion(quat)

    def _start_info(self) -> dict[str, Any]:
        _, info = self._outcome(np.zeros_like(self._act_low))
        return {k: info[k] for k in ('distance', 'ee_distance', 'is_success')}

    def _outcome(self, action: np.ndarray) -> tuple[float, dict[str, Any]]:
        return self.task.outcome(self._ee, self._object_pos, self._goal, action)

    def _observe(self) -> np.ndarray:
        return self.task.observation(*self._observed_joints(), self._ee, self._object_pos,
                                     self._object_quat, self._goal)

    # ------------------------------------------------------------------ node helpers
    def object_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """Return the cube's (position (m), quaternion x, y, z, w with w >= 0), world frame."""
        return self._object_pos.copy(), self._object_quat.copy()
