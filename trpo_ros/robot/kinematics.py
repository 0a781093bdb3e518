"""
URDF kinematic chains and THE forward kinematics, in numpy (no pybullet).

:class:`KinematicChain` is the one forward kinematics of the package: the sim's checks, the
ROS env's workspace box and the exported ONNX graph (whose torch module is built from a
chain's matrices) all use it. For every joint on the chain from the base link to the
end-effector link::

    T_joint = T_origin(xyz, rpy) @ T_motion(axis, q)
    R(rpy)  = Rz(yaw) @ Ry(pitch) @ Rx(roll)        # URDF fixed-axis XYZ convention
    T_motion = rotation by q about `axis`  (revolute / continuous)
             | translation by q * axis      (prismatic)
             | identity                     (fixed)

and the end-effector position is the translation of
``T_base @ T_joint_1 @ ... @ T_joint_n`` — the origin of the ee URDF link frame, which is what
``pybullet.getLinkState(body, link, computeForwardKinematics=True)[4]`` returns.

A chain is a list of JSON-serializable dicts (``spec_info()['fk_chain']``)::

    {'joint_name': str, 'type': 'revolute'|'prismatic'|'continuous'|'fixed',
     'parent': str, 'child': str, 'xyz': [3 floats], 'rpy': [3 floats], 'axis': [3 floats]}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
import math
import xml.etree.ElementTree as ET

import numpy as np
from trpo_ros.errors import UserError

MOVABLE_TYPES = ('revolute', 'prismatic', 'continuous')
_KNOWN_TYPES = ('revolute', 'prismatic', 'continuous', 'fixed', 'floating', 'planar')


class UrdfError(UserError):
    """The URDF text cannot be parsed or lacks a link/joint that was asked for."""


@dataclass(frozen=True)
class UrdfJoint:
    """
    One `<joint>` element of a URDF, with the limits the env uses.

    Attributes
    ----------
        name: joint name.
        type: 'revolute' | 'prismatic' | 'continuous' | 'fixed' | 'floating' | 'planar'.
        parent: parent link name.
        child: child link name.
        xyz: origin translation (m).
        rpy: origin rotation, fixed-axis roll, pitch, yaw (rad).
        axis: joint axis in the joint frame (unit vector).
        lower: lower position limit (rad or m); -pi for continuous joints.
        upper: upper position limit (rad or m); +pi for continuous joints.
        velocity: velocity limit (rad/s or m/s); 0.0 when the URDF gives none.
        effort: effort limit (Nm or N); 0.0 when the URDF gives none.
        damping: `<dynamics damping>` (0.0 when absent).
        friction: `<dynamics friction>` (0.0 when absent).

    """

    name: str
    type: str  # noqa: A003 - the URDF attribute name
    parent: str
    child: str
    xyz: tuple[float, float, float]
    rpy: tuple[float, float, float]
    axis: tuple[float, float, float]
    lower: float
    upper: float
    velocity: float
    effort: float
    damping: float
    friction: float

    @property
    def movable(self) -> bool:
        """Tell whether the joint moves (revolute, prismatic or continuous)."""
        return self.type in MOVABLE_TYPES


def _floats(text: str | None, default: Sequence[float]) -> tuple[float, ...]:
    if text is None:
        return tuple(float(v) for v in default)
    values = tuple(float(v) for v in text.split())
    if len(values) != len(default):
        raise UrdfError(f'expected {len(default)} numbers, got {text!r}')
    return values


def _root(urdf_text: str) -> ET.Element:
    try:
        root = ET.fromstring(urdf_text)
    except ET.ParseError as exc:
        raise UrdfError(f'URDF is not valid XML: {exc}') from exc
    if root.tag != 'robot':
        raise UrdfError(f'URDF root element is <{root.tag}>, expected <robot>')
    return root


def parse_joints(urdf_text: str) -> list[UrdfJoint]:
    """Return every `<joint>` of a URDF in document order, with origin, axis and limits."""
    joints = []
    for elem in _root(urdf_text).findall('joint'):
        name = elem.get('name', '')
        jtype = elem.get('type', '')
        if jtype not in _KNOWN_TYPES:
            raise UrdfError(f'joint {name!r} has unknown type {jtype!r}')
        parent, child = elem.find('parent'), elem.find('child')
        if parent is None or child is None:
            raise UrdfError(f'joint {name!r} lacks <parent> or <child>')
        origin = elem.find('origin')
        xyz = _floats(origin.get('xyz') if origin is not None else None, (0.0, 0.0, 0.0))
        rpy = _floats(origin.get('rpy') if origin is not None else None, (0.0, 0.0, 0.0))
        axis_elem = elem.find('axis')
        axis = np.array(_floats(axis_elem.get('xyz') if axis_elem is not None else None,
                                (1.0, 0.0, 0.0)))
        norm = float(np.linalg.norm(axis))
        axis = axis / norm if norm > 0 else np.array([1.0, 0.0, 0.0])
        limit = elem.find('limit')
        lim = {k: float(limit.get(k, 0.0)) for k in ('lower', 'upper', 'velocity', 'effort')} \
            if limit is not None else dict.fromkeys(('lower', 'upper', 'velocity', 'effort'), 0.0)
        if jtype == 'continuous':
            lim['lower'], lim['upper'] = -math.pi, math.pi
        dyn = elem.find('dynamics')
        damping = float(dyn.get('damping', 0.0)) if dyn is not None else 0.0
        friction = float(dyn.get('friction', 0.0)) if dyn is not None else 0.0
        joints.append(UrdfJoint(
            name=name, type=jtype, parent=parent.get('link', ''), child=child.get('link', ''),
            xyz=xyz, rpy=rpy, axis=tuple(float(a) for a in axis),  # type: ignore[arg-type]
            lower=lim['lower'], upper=lim['upper'], velocity=lim['velocity'],
            effort=lim['effort'], damping=damping, friction=friction))
    return joints


def link_names(urdf_text: str) -> list[str]:
    """Return the names of all `<link>` elements in document order."""
    return [elem.get('name', '') for elem in _root(urdf_text).findall('link')]


def root_link(urdf_text: str) -> str:
    """Return the URDF root link: the one link that is no joint's child."""
    children = {j.child for j in parse_joints(urdf_text)}
    roots = [name for name in link_names(urdf_text) if name not in children]
    if len(roots) != 1:
        raise UrdfError(f'URDF must have exactly one root link, found {roots}')
    return roots[0]


def parse_chain(urdf_text: str, base_link: str | None = None,
                ee_link: str | None = None) -> list[dict]:
    """
    Return the joints from `base_link` (default: URDF root) to `ee_link`, base first.

    Pass the links by keyword to be unambiguous. With only one link given
    (``parse_chain(text, 'tool0')``) that link is taken as the end effector.

    Raises
    ------
        UrdfError: a link does not exist or `ee_link` is not below `base_link`.

    """
    if ee_link is None:
        if base_link is None:
            raise UrdfError('parse_chain needs an ee_link')
        ee_link, base_link = base_link, None
    joints = parse_joints(urdf_text)
    links = set(link_names(urdf_text))
    base = base_link if base_link is not None else root_link(urdf_text)
    for which, name in (('end-effector', ee_link), ('base', base)):
        if name not in links:
            raise UrdfError(f'{which} link {name!r} not in URDF (links: {sorted(links)})')
    by_child = {j.child: j for j in joints}
    chain: list[UrdfJoint] = []
    link = ee_link
    while link != base:
        if link not in by_child:
            raise UrdfError(f'link {ee_link!r} is not a descendant of base link {base!r}')
        chain.append(by_child[link])
        link = by_child[link].parent
    return [
        {'joint_name': j.name, 'type': j.type, 'parent': j.parent, 'child': j.child,
         'xyz': list(j.xyz), 'rpy': list(j.rpy), 'axis': list(j.axis)}
        for j in reversed(chain)
    ]


def rpy_to_matrix(rpy: Sequence[float]) -> np.ndarray:
    """Rotation matrix of fixed-axis XYZ roll-pitch-yaw: R = Rz(yaw) @ Ry(pitch) @ Rx(roll)."""
    r, p, y = rpy
    cr, sr, cp, sp, cy, sy = (math.cos(r), math.sin(r), math.cos(p), math.sin(p),
                              math.cos(y), math.sin(y))
    rx = np.array([[1.0, 0.0, 0.0], [0.0, cr, -sr], [0.0, sr, cr]])
    ry = np.array([[cp, 0.0, sp], [0.0, 1.0, 0.0], [-sp, 0.0, cp]])
    rz = np.array([[cy, -sy, 0.0], [sy, cy, 0.0], [0.0, 0.0, 1.0]])
    return rz @ ry @ rx


def skew(axis: Sequence[float]) -> np.ndarray:
    """Cross-product matrix K of `axis` (K v = axis x v)."""
    k = np.asarray(axis, dtype=np.float64)
    return np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])


def axis_angle_to_matrix(axis: Sequence[float], angle: float) -> np.ndarray:
    """Rotation matrix for `angle` (rad) about unit `axis` (Rodrigues' formula)."""
    kx = skew(axis)
    return np.eye(3) + math.sin(angle) * kx + (1.0 - math.cos(angle)) * (kx @ kx)


def quaternion_to_matrix(quat: Sequence[float]) -> np.ndarray:
    """Rotation matrix of a unit quaternion given as (x, y, z, w), pybullet's order."""
    x, y, z, w = (float(v) for v in quat)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def canonical_quaternion(quat: Sequence[float]) -> np.ndarray:
    """Return the unit quaternion (x, y, z, w) of the same rotation with w >= 0."""
    q = np.asarray(quat, dtype=np.float64)
    norm = float(np.linalg.norm(q))
    if q.shape != (4,) or not np.isfinite(q).all() or norm == 0.0:
        raise ValueError(f'not a quaternion: {quat!r}')
    q = q / norm
    return -q if q[3] < 0 else q


def homogeneous(rot: np.ndarray, trans: Sequence[float] = (0.0, 0.0, 0.0)) -> np.ndarray:
    """4x4 transform of a rotation matrix and a translation."""
    t = np.eye(4)
    t[:3, :3] = rot
    t[:3, 3] = trans
    return t


def movable_joint_names(chain: Sequence[Mapping]) -> list[str]:
    """Names of the movable joints of a chain, base first (the order FK expects q in)."""
    return [j['joint_name'] for j in chain if j['type'] in MOVABLE_TYPES]


class KinematicChain:
    """
    A chain with its constant transforms precomputed: joint positions -> end-effector position.

    Every joint transform is affine in (cos q, sin q, q): by Rodrigues
    ``R(q) = (I + K^2) + K sin q - K^2 cos q`` (K = skew(axis)), and a prismatic joint
    translates by ``q * axis``. Constant transforms (base pose, fixed joints, chain joints
    `joint_names` lacks, held at 0) are folded into a neighbour, so the chain is
    ``T = prod_e (cos q_e C_e + sin q_e S_e + q_e P_e + B_e)`` over its movable joints `e`.

    Attributes
    ----------
        joint_names: order of the positions :meth:`position` takes.
        columns: for each factor, the index of its joint in `joint_names`.
        factors: for each factor, the 4x4 matrices (C, S, P, B).

    """

    def __init__(self, chain: Sequence[Mapping], joint_names: Sequence[str] | None = None,
                 base_position: Sequence[float] = (0.0, 0.0, 0.0),
                 base_orientation: Sequence[float] = (0.0, 0.0, 0.0, 1.0)) -> None:
        self.joint_names = list(joint_names) if joint_names is not None \
            else movable_joint_names(chain)
        index = {name: i for i, name in enumerate(self.joint_names)}
        zero = np.zeros((4, 4))
        factors: list[list[np.ndarray]] = []
        columns: list[int] = []
        prefix = homogeneous(quaternion_to_matrix(base_orientation), base_position)
        for joint in chain:
            origin = prefix @ homogeneous(rpy_to_matrix(joint['rpy']), joint['xyz'])
            name, jtype = joint['joint_name'], joint['type']
            axis = np.asarray(joint['axis'], np.float64)
            if name in index and jtype in ('revolute', 'continuous'):
                k = skew(axis)
                factors.append([origin @ _block(-k @ k), origin @ _block(k), zero,
                                origin @ homogeneous(np.eye(3) + k @ k)])
            elif name in index and jtype == 'prismatic':
                shift = np.zeros((4, 4))
                shift[:3, 3] = axis
                factors.append([zero, zero, origin @ shift, origin])
            else:  # fixed, or held at 0: a constant, folded into what follows
                prefix = origin
                continue
            columns.append(index[name])
            prefix = np.eye(4)
        if not factors:  # no movable joint: a constant position
            factors.append([zero, zero, zero, np.eye(4)])
            columns.append(0)
        factors[-1] = [m @ prefix for m in factors[-1]]
        self.factors = factors
        self.columns = columns
        self.prismatic = any(np.any(f[2]) for f in factors)

    def position(self, q: Sequence[float] | np.ndarray) -> np.ndarray:
        """Return the end-effector frame's world position in m; `q` in joint_names order."""
        q = np.asarray(q, np.float64).reshape(-1)
        if len(q) != len(self.joint_names):
            raise ValueError(f'expected {len(self.joint_names)} joint positions, got {len(q)}')
        t = np.eye(4)
        for (cos_m, sin_m, q_m, const), column in zip(self.factors, self.columns, strict=True):
            value = float(q[column]) if self.joint_names else 0.0
            t = t @ (math.cos(value) * cos_m + math.sin(value) * sin_m + value * q_m + const)
        return t[:3, 3].copy()


def _block(rot: np.ndarray) -> np.ndarray:
    t = np.zeros((4, 4))
    t[:3, :3] = rot
    return t


def forward_kinematics(
    chain: Sequence[Mapping],
    joint_positions: Sequence[float] | Mapping[str, float] | np.ndarray,
    base_position: Sequence[float] = (0.0, 0.0, 0.0),
    base_orientation: Sequence[float] = (0.0, 0.0, 0.0, 1.0),
    joint_names: Sequence[str] | None = None,
) -> np.ndarray:
    """
    World position (m) of the last link frame of `chain` (a :class:`KinematicChain` at once).

    Parameters
    ----------
    chain
        output of `parse_chain`.
    joint_positions
        positions of the chain's movable joints in chain order (base first),
        or a name -> position mapping, or positions in `joint_names` order.
    base_position
        world position of the base link frame.
    base_orientation
        world orientation of the base link frame, quaternion (x, y, z, w).
    joint_names
        order of `joint_positions` when it is a sequence; joints on the chain
        missing from it are held at 0.

    Returns
    -------
        np.ndarray of shape (3,), float64.

    """
    if isinstance(joint_positions, Mapping):
        names = list(joint_positions)
        q = [float(joint_positions[name]) for name in names]
    else:
        q = np.asarray(joint_positions, dtype=np.float64).reshape(-1)
        names = list(joint_names) if joint_names is not None else movable_joint_names(chain)
    return KinematicChain(chain, names, base_position, base_orientation).position(q)
