"""
The robot as data (numpy only): joints, limits, home, end effector, base pose and URDF.

:class:`RobotSpec` is what the sim, the ROS env, the export and the nodes agree on about a
robot. :func:`robot_spec` builds it from the ``robot:`` section of a robot/task YAML (see
`trpo_ros.robot.config`) and the URDF it names, by reading the URDF XML — no PyBullet, so a
robot computer can build it. The PyBullet sim loads the same URDF and checks it agrees.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
import os
from pathlib import Path
import re
from typing import Any

import numpy as np
from trpo_ros.robot import kinematics
from trpo_ros.robot.config import LIMIT_KEYS, RobotConfigError

DEFAULT_VELOCITY_LIMIT = 2.0  # rad/s (m/s) when the URDF <limit velocity> is missing or 0
DEFAULT_EFFORT_LIMIT = 100.0  # Nm (N) when the URDF <limit effort> is missing or 0
_FILENAME_RE = re.compile(r'filename\s*=\s*"([^"]+)"')


def pybullet_data_path() -> Path | None:
    """Return the folder of pybullet_data's models (kuka_iiwa/, ...), None if not installed."""
    try:
        import pybullet_data  # data files only: does not load the physics engine
    except ImportError:
        return None
    return Path(pybullet_data.getDataPath())


def is_urdf_text(source: str) -> bool:
    """Tell whether `source` is URDF XML rather than a file name."""
    return '<robot' in source


def resolve_urdf_path(source: str | os.PathLike) -> Path:
    """
    Return the URDF file for a path or a pybullet_data model name ('kuka_iiwa/model.urdf').

    Raises
    ------
        RobotConfigError: no such file (names the places looked at).

    """
    path = Path(source).expanduser()
    if path.is_file():
        return path.resolve()
    data = pybullet_data_path()
    candidate = data / path if data is not None else None
    if candidate is not None and not path.is_absolute() and candidate.is_file():
        return candidate
    raise RobotConfigError(f'URDF file not found: {str(source)!r}'
                           + (f' (also looked at {candidate})' if candidate else ''))


def mesh_search_dirs(dirs: Sequence[str | Path]) -> list[Path]:
    """Mesh search folders: `dirs`, then pybullet_data and its sub-folders (if installed)."""
    data = pybullet_data_path()
    extra = [data, *sorted(d for d in data.iterdir() if d.is_dir())] if data else []
    return [*map(Path, dirs), *extra]


def resolve_mesh_paths(urdf_text: str, search_dirs: Sequence[str | Path]) -> str:
    """Make relative and package:// mesh file names in URDF text absolute where found."""
    dirs = [Path(d) for d in search_dirs]

    def resolve(match: re.Match) -> str:
        name = match.group(1)
        if name.startswith('file://'):
            name = name[len('file://'):]
        candidates: list[str] = []
        if name.startswith('package://'):
            rest = name[len('package://'):]
            candidates = [rest, rest.split('/', 1)[-1]]
        elif not os.path.isabs(name):
            candidates = [name]
        else:
            return f'filename="{name}"'
        for folder in dirs:
            for rel in candidates:
                if (folder / rel).is_file():
                    return f'filename="{folder / rel}"'
        return match.group(0)

    return _FILENAME_RE.sub(resolve, urdf_text)


@dataclass(frozen=True, eq=False)
class RobotSpec:
    """
    A fixed-base arm: which joints are controlled, their limits, and where the tool is.

    Attributes
    ----------
        urdf_text: the URDF XML.
        urdf_path: the URDF file, or None when the URDF was given as text.
        joint_names: controlled joints, in action order.
        lower: position lower limits (rad or m), one per controlled joint.
        upper: position upper limits.
        velocity_limits: velocity limits (rad/s or m/s), > 0.
        effort_limits: effort limits (Nm or N), > 0.
        home: reset configuration, within the limits.
        ee_link: end-effector link (its URDF frame is tracked).
        base_link: the URDF root link.
        base_position: world position of the base link frame (m).
        base_orientation: world orientation of the base link frame, quaternion (x, y, z, w).
        fk_chain: joints from the base link to `ee_link` (see `trpo_ros.robot.kinematics`).
        mesh_dirs: folders in which mesh files named by the URDF are looked up.

    """

    urdf_text: str
    urdf_path: Path | None
    joint_names: tuple[str, ...]
    lower: np.ndarray
    upper: np.ndarray
    velocity_limits: np.ndarray
    effort_limits: np.ndarray
    home: np.ndarray
    ee_link: str
    base_link: str
    base_position: tuple[float, float, float]
    base_orientation: tuple[float, float, float, float]
    fk_chain: tuple[dict, ...]
    mesh_dirs: tuple[Path, ...] = ()

    @property
    def n_joints(self) -> int:
        """Return the number of controlled joints."""
        return len(self.joint_names)

    @property
    def urdf_origin(self) -> str:
        """Return where the URDF came from, for error messages."""
        return str(self.urdf_path) if self.urdf_path is not None else '<URDF string>'

    def kinematic_chain(self) -> kinematics.KinematicChain:
        """Return THE forward kinematics of this arm (controlled joints in action order)."""
        return kinematics.KinematicChain(self.fk_chain, self.joint_names, self.base_position,
                                         self.base_orientation)

    def portable_urdf(self) -> str:
        """Return the URDF text with its mesh file names made absolute (loadable from here)."""
        return resolve_mesh_paths(self.urdf_text, mesh_search_dirs(self.mesh_dirs))

    def limits(self) -> dict[str, dict[str, float]]:
        """Return {joint: {lower, upper, velocity, effort}}, the YAML's `limits` form."""
        return {j: {'lower': lo, 'upper': hi, 'velocity': v, 'effort': e}
                for j, lo, hi, v, e in zip(self.joint_names, self.lower.tolist(),
                                           self.upper.tolist(), self.velocity_limits.tolist(),
                                           self.effort_limits.tolist())}


def movable_joints_in_tree_order(joints: Sequence[kinematics.UrdfJoint], root: str) -> list[str]:
    """Movable joints depth first from `root`, children in document order (PyBullet's order)."""
    children: dict[str, list[kinematics.UrdfJoint]] = {}
    for joint in joints:
        children.setdefault(joint.parent, []).append(joint)
    order: list[str] = []
    stack = list(reversed(children.get(root, [])))
    while stack:
        joint = stack.pop()
        if joint.movable:
            order.append(joint.name)
        stack.extend(reversed(children.get(joint.child, [])))
    return order


def _same_robot(urdf_text: str, robot_cfg: Mapping[str, Any]) -> bool:
    """Tell whether the YAML's ee_link and joints exist in `urdf_text` (the same robot)."""
    links = set(kinematics.link_names(urdf_text))
    joints = {j.name for j in kinematics.parse_joints(urdf_text)}
    return robot_cfg.get('ee_link') in links and set(robot_cfg.get('joints') or []) <= joints


def _limits(joints: Sequence[kinematics.UrdfJoint],
            overrides: Mapping[str, Mapping[str, float]]) -> list[np.ndarray]:
    """(lower, upper, velocity, effort) of `joints`: the URDF's, defaults, then overrides."""
    names = [j.name for j in joints]
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise RobotConfigError(f'limit overrides for joints {unknown} that are not controlled '
                               f'({names})')
    rows = []
    for joint in joints:
        values = {'lower': joint.lower, 'upper': joint.upper,
                  'velocity': joint.velocity or DEFAULT_VELOCITY_LIMIT,
                  'effort': joint.effort or DEFAULT_EFFORT_LIMIT}
        extra = sorted(set(overrides.get(joint.name, {})) - set(LIMIT_KEYS))
        if extra:
            raise RobotConfigError(f'joint {joint.name!r}: unknown limit keys {extra}')
        values.update({k: float(v) for k, v in overrides.get(joint.name, {}).items()})
        if not values['lower'] < values['upper']:
            raise RobotConfigError(f'joint {joint.name!r}: lower limit {values["lower"]} is not '
                                   f'below upper limit {values["upper"]}')
        if values['velocity'] <= 0 or values['effort'] <= 0:
            raise RobotConfigError(f'joint {joint.name!r}: velocity and effort limits must be '
                                   '> 0')
        rows.append([values[k] for k in LIMIT_KEYS])
    return list(np.array(rows, dtype=np.float64).reshape(-1, 4).T)


def robot_spec(robot_cfg: Mapping[str, Any], *, urdf: str | os.PathLike | None = None,
               joints: Sequence[str] | None = None, ee_link: str | None = None,
               home: Sequence[float] | None = None,
               limits: Mapping[str, Mapping[str, float]] | None = None,
               base_position: Sequence[float] | None = None,
               base_orientation: Sequence[float] | None = None,
               mesh_search_paths: Sequence[str | os.PathLike] = ()) -> RobotSpec:
    """
    Build the RobotSpec of a YAML ``robot:`` mapping, with keyword overrides.

    `urdf` replaces the robot (file path, pybullet_data name or URDF text): the mapping's
    joints, ee_link, home and limits are kept when its ee_link and joints exist in that URDF
    (the same robot), else dropped (all movable joints, last link, zero home). Defaults: all
    movable joints in PyBullet's (tree) order, the child link of the last controlled joint,
    home = zeros clipped to the limits, base at the origin.

    Raises
    ------
        RobotConfigError: missing URDF, unknown joint or link, bad limits or home.

    """
    cfg = dict(robot_cfg)
    mesh_dirs = [Path(d) for d in mesh_search_paths]
    yaml_urdf = str(cfg['urdf'])
    if not is_urdf_text(yaml_urdf):
        try:
            mesh_dirs.append(resolve_urdf_path(yaml_urdf).parent)
        except RobotConfigError:
            pass
    source = str(urdf) if urdf is not None else yaml_urdf
    path = None if is_urdf_text(source) else resolve_urdf_path(source)
    text = source if path is None else path.read_text()
    if path is not None:
        mesh_dirs.insert(0, path.parent)
    origin = str(path) if path is not None else '<URDF string>'
    try:
        if source != yaml_urdf and not _same_robot(text, cfg):
            cfg = {k: v for k, v in cfg.items() if k in ('base_position', 'base_orientation')}
        urdf_joints = kinematics.parse_joints(text)
        base_link = kinematics.root_link(text)
        links = kinematics.link_names(text)
    except kinematics.UrdfError as exc:
        raise RobotConfigError(f'{origin}: {exc}') from exc
    by_name = {j.name: j for j in urdf_joints}

    names = list(joints if joints is not None else cfg.get('joints')
                 or movable_joints_in_tree_order(urdf_joints, base_link))
    if not names:
        raise RobotConfigError(f'{origin}: URDF has no movable (revolute/prismatic/continuous) '
                               'joints')
    for name in names:
        if name not in by_name:
            raise RobotConfigError(f'{origin}: joint {name!r} not in URDF '
                                   f'(joints: {sorted(by_name)})')
        if not by_name[name].movable:
            raise RobotConfigError(f'{origin}: joint {name!r} is not movable')
    try:
        lower, upper, velocity, effort = _limits(
            [by_name[n] for n in names], limits if limits is not None else cfg.get('limits') or {})
    except RobotConfigError as exc:
        raise RobotConfigError(f'{origin}: {exc}') from None

    ee = ee_link if ee_link is not None else cfg.get('ee_link') or by_name[names[-1]].child
    if ee not in links:
        raise RobotConfigError(f'{origin}: end-effector link {ee!r} not in URDF '
                               f'(links: {sorted(links)})')
    if ee == base_link:
        raise RobotConfigError(f'{origin}: end-effector link {ee!r} is the base')
    chain = kinematics.parse_chain(text, base_link=base_link, ee_link=ee)

    start = home if home is not None else cfg.get('home')
    home_q = np.asarray(np.clip(np.zeros(len(names)), lower, upper) if start is None else start,
                        dtype=np.float64)
    if home_q.shape != (len(names),):
        raise RobotConfigError(f'home has {home_q.size} values, robot has {len(names)} joints '
                               f'{names}')
    if np.any(home_q < lower) or np.any(home_q > upper):
        raise RobotConfigError(f'home {home_q.tolist()} is outside the joint limits')
    position = tuple(float(v) for v in (base_position or cfg.get('base_position')
                                        or (0.0, 0.0, 0.0)))
    orientation = tuple(float(v) for v in (base_orientation or cfg.get('base_orientation')
                                           or (0.0, 0.0, 0.0, 1.0)))
    return RobotSpec(urdf_text=text, urdf_path=path, joint_names=tuple(names), lower=lower,
                     upper=upper, velocity_limits=velocity, effort_limits=effort, home=home_q,
                     ee_link=ee, base_link=base_link,
                     base_position=position,  # type: ignore[arg-type]
                     base_orientation=orientation,  # type: ignore[arg-type]
                     fk_chain=tuple(chain), mesh_dirs=tuple(mesh_dirs))
