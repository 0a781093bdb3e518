"""
Message <-> numpy helpers shared by the nodes: observation layout, QoS, diagnostics, markers.

Nothing here imports torch; the inference node's hot path lives in :class:`ObservationLayout`
(index maps are computed once per model and once per distinct JointState name list).
"""

from __future__ import annotations

import array
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
import math
from typing import Any
import xml.etree.ElementTree as ET

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Point
import numpy as np
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
)
from rclpy.serialization import serialize_message
from sensor_msgs.msg import JointState
from std_msgs.msg import ColorRGBA, Float64MultiArray, MultiArrayDimension
from trpo_ros.robot.observation import ObservationError, validate_goal, validate_object_pose
from visualization_msgs.msg import Marker

try:
    from rclpy.event_handler import SubscriptionEventCallbacks
except ImportError:  # Humble
    from rclpy.qos_event import SubscriptionEventCallbacks

OK, WARN, ERROR = 0, 1, 2  # DiagnosticStatus levels as ints (the message stores bytes)
LEVEL_NAMES = {OK: 'OK', WARN: 'WARN', ERROR: 'ERROR'}


RGBA = tuple[float, float, float, float]
GOAL_RGBA: RGBA = (0.1, 0.8, 0.1, 0.6)
"""Goal sphere colour (translucent green)."""
EE_REACHED_RGBA: RGBA = (0.1, 0.9, 0.1, 1.0)
"""End-effector sphere colour within the success threshold (green)."""
EE_AWAY_RGBA: RGBA = (0.9, 0.3, 0.1, 1.0)
"""End-effector sphere colour outside the success threshold (orange)."""
EE_DIAMETER = 0.04
"""End-effector sphere diameter (m)."""
OBJECT_RGBA: RGBA = (0.85, 0.25, 0.2, 1.0)
"""The push task's cube (red, as in the sim's render)."""


# --------------------------------------------------------------------------------------- QoS

def reliability_policy(name: str) -> ReliabilityPolicy:
    """'reliable' | 'best_effort' -> ReliabilityPolicy (ValueError on anything else)."""
    key = name.strip().lower().replace('-', '_')
    if key == 'reliable':
        return ReliabilityPolicy.RELIABLE
    if key == 'best_effort':
        return ReliabilityPolicy.BEST_EFFORT
    raise ValueError(f"reliability must be 'reliable' or 'best_effort', got {name!r}")


def command_qos(reliability: str = 'reliable', depth: int = 10) -> QoSProfile:
    """Commands to a ros2_control forward controller: keep-last, RELIABLE by default."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                      reliability=reliability_policy(reliability),
                      durability=DurabilityPolicy.VOLATILE)


def state_qos(depth: int = 10) -> QoSProfile:
    """`/joint_states` as joint_state_broadcaster publishes it (keep-last, reliable)."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                      reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.VOLATILE)


def object_qos() -> QoSProfile:
    """Return the QoS of an object pose input: best effort, so any publisher's QoS matches."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5,
                      reliability=ReliabilityPolicy.BEST_EFFORT,
                      durability=DurabilityPolicy.VOLATILE)


def latched_qos() -> QoSProfile:
    """TRANSIENT_LOCAL depth 1: late joiners get the last message (robot_description, goal)."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                      reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL)


def subscribe_any_durability(node: Any, msg_type: Any, topic: str,
                             callback: Callable[[Any], None]) -> list[Any]:
    """
    Subscribe to `topic` so that volatile AND transient-local publishers both reach `callback`.

    A transient-local subscription is incompatible with volatile publishers (`ros2 topic pub`,
    rviz2's Publish Point, most user code), a volatile one misses the latched message of a
    publisher that came first. So: one subscription of each. A transient-local publisher
    reaches both; its second copy of a message (same stamp and content, seen on the other
    subscription first) is dropped, so the newest message always wins.
    """
    seen: dict[int, deque] = {0: deque(maxlen=16), 1: deque(maxlen=16)}

    def receive(which: int, msg: Any) -> None:
        key = bytes(serialize_message(msg))
        twins = seen[1 - which]
        if key in twins:
            twins.remove(key)
            return
        seen[which].append(key)
        callback(msg)

    volatile = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10,
                          reliability=ReliabilityPolicy.RELIABLE,
                          durability=DurabilityPolicy.VOLATILE)
    # The transient-local one is incompatible with every volatile publisher by design: no
    # warning each time one appears (rclpy's default handler would log one).
    quiet = SubscriptionEventCallbacks(incompatible_qos=lambda _event: None)
    return [node.create_subscription(msg_type, topic, lambda m: receive(0, m), volatile),
            node.create_subscription(msg_type, topic, lambda m: receive(1, m), latched_qos(),
                                     event_callbacks=quiet)]


def goal_from_msg(msg: Any, base_frame: str) -> np.ndarray:
    """Return the goal of a PointStamped in `base_frame` or an empty frame (else raise)."""
    frame = msg.header.frame_id
    if frame and frame != base_frame:
        raise ObservationError(f'goal in frame {frame[:60]!r}, expected {base_frame!r} or empty '
                               '(no tf2 here: transform it before publishing)')
    return validate_goal((msg.point.x, msg.point.y, msg.point.z))


def object_pose_from_msg(msg: Any, base_frame: str) -> np.ndarray:
    """Return [x, y, z, qx, qy, qz, qw] (qw >= 0) of a PoseStamped in `base_frame` (else raise)."""
    frame = msg.header.frame_id
    if frame and frame != base_frame:
        raise ObservationError(f'object pose in frame {frame[:60]!r}, expected {base_frame!r} or '
                               'empty (no tf2 here: transform it before publishing)')
    p, q = msg.pose.position, msg.pose.orientation
    return validate_object_pose((p.x, p.y, p.z), (q.x, q.y, q.z, q.w))


def pose_stamped(msg: Any, stamp: Any, frame_id: str, pose: np.ndarray) -> Any:
    """Fill a PoseStamped from [x, y, z, qx, qy, qz, qw]."""
    msg.header.stamp, msg.header.frame_id = stamp, frame_id
    p, q = msg.pose.position, msg.pose.orientation
    p.x, p.y, p.z, q.x, q.y, q.z, q.w = (float(v) for v in pose)
    return msg


# ---------------------------------------------------------------------------------- messages

def float64_array(values: np.ndarray, labels: Sequence[str] | None = None,
                  msg: Float64MultiArray | None = None) -> Float64MultiArray:
    """Fill (or build) a Float64MultiArray with `values`; `labels` adds one layout dim."""
    if msg is None:
        msg = Float64MultiArray()
        if labels is not None:
            msg.layout.dim = [MultiArrayDimension(label=','.join(labels), size=len(labels),
                                                  stride=len(labels))]
    msg.data = array.array('d', np.asarray(values, np.float64).tobytes())
    return msg


def as_array(values: Any) -> np.ndarray:
    """View a message sequence field (array.array or list) as a float64 numpy array (no copy)."""
    if isinstance(values, array.array):
        return np.frombuffer(values, np.float64) if len(values) else np.zeros(0)
    return np.asarray(values, np.float64)


def key_values(values: Mapping[str, Any]) -> list[KeyValue]:
    """Diagnostic KeyValues; floats printed with 4 significant digits."""
    out = []
    for key, value in values.items():
        text = f'{value:.4g}' if isinstance(value, float) else str(value)
        out.append(KeyValue(key=str(key), value=text))
    return out


def diagnostic_status(name: str, hardware_id: str, level: int, message: str,
                      values: Mapping[str, Any]) -> DiagnosticStatus:
    """One DiagnosticStatus (level OK/WARN/ERROR as bytes, as the message requires)."""
    return DiagnosticStatus(level=bytes([level]), name=name, hardware_id=hardware_id,
                            message=message, values=key_values(values))


def diagnostic_array(stamp: Any, statuses: Sequence[DiagnosticStatus]) -> DiagnosticArray:
    """Build a DiagnosticArray stamped `stamp` (builtin_interfaces/Time)."""
    msg = DiagnosticArray()
    msg.header.stamp = stamp
    msg.status = list(statuses)
    return msg


def fill_joint_state(msg: JointState, stamp: Any, positions: np.ndarray,
                     velocities: np.ndarray, efforts: np.ndarray) -> JointState:
    """Stamp a (reused) JointState and set its position/velocity/effort lists (float64)."""
    msg.header.stamp = stamp
    msg.position = positions.astype(np.float64).tolist()
    msg.velocity = velocities.astype(np.float64).tolist()
    msg.effort = efforts.astype(np.float64).tolist()
    return msg


def status_level(status: DiagnosticStatus) -> int:
    """Return the level of a DiagnosticStatus as an int (the field is a bytes of length 1)."""
    level = status.level
    return level[0] if isinstance(level, (bytes, bytearray)) else int(level)


class LatencyWindow:
    """Fixed-size ring of latency samples (seconds) with p50/p99 in milliseconds."""

    def __init__(self, size: int = 2000) -> None:
        self._buf = np.zeros(size, np.float64)
        self._n = 0

    def add(self, seconds: float) -> None:
        """Record one sample (no allocation)."""
        self._buf[self._n % self._buf.shape[0]] = seconds
        self._n += 1

    def __len__(self) -> int:
        return min(self._n, self._buf.shape[0])

    def percentiles_ms(self) -> tuple[float, float]:
        """(p50, p99) in ms over the window, NaN when empty."""
        n = len(self)
        if n == 0:
            return math.nan, math.nan
        p50, p99 = np.percentile(self._buf[:n], [50, 99])
        return float(p50 * 1e3), float(p99 * 1e3)


# ----------------------------------------------------------------------------------- markers

def _marker(ns: str, marker_id: int, kind: int, rgba: RGBA, frame_id: str,
            stamp: Any) -> Marker:
    marker = Marker(ns=ns, id=marker_id, type=kind, action=Marker.ADD,
                    color=ColorRGBA(r=rgba[0], g=rgba[1], b=rgba[2], a=rgba[3]))
    marker.header.frame_id, marker.header.stamp = frame_id, stamp
    marker.pose.orientation.w = 1.0
    return marker


def sphere_marker(ns: str, marker_id: int, position: Sequence[float], diameter: float,
                  rgba: RGBA, frame_id: str, stamp: Any) -> Marker:
    """Build a SPHERE marker of `diameter` metres centred at `position` [x, y, z] in `frame_id`."""
    marker = _marker(ns, marker_id, Marker.SPHERE, rgba, frame_id, stamp)
    marker.pose.position.x, marker.pose.position.y, marker.pose.position.z = (
        float(v) for v in position)
    marker.scale.x = marker.scale.y = marker.scale.z = float(diameter)
    return marker


def line_strip_marker(ns: str, marker_id: int, points: Iterable[Sequence[float]],
                      width: float, rgba: RGBA, frame_id: str, stamp: Any) -> Marker:
    """Build a LINE_STRIP marker through `points` ([x, y, z] each), `width` metres wide."""
    marker = _marker(ns, marker_id, Marker.LINE_STRIP, rgba, frame_id, stamp)
    marker.scale.x = float(width)
    marker.points = [Point(x=float(p[0]), y=float(p[1]), z=float(p[2])) for p in points]
    return marker


def reach_markers(goal: np.ndarray, ee: np.ndarray, threshold: float, goal_diameter: float,
                  frame_id: str, stamp: Any) -> list[Marker]:
    """
    Goal sphere ('goal', id 0) and end-effector sphere ('end_effector', id 1).

    The end effector is green within `threshold` metres of the goal, orange otherwise.
    """
    close = float(np.linalg.norm(goal - ee)) < threshold
    return [sphere_marker('goal', 0, goal, goal_diameter, GOAL_RGBA, frame_id, stamp),
            sphere_marker('end_effector', 1, ee, EE_DIAMETER,
                          EE_REACHED_RGBA if close else EE_AWAY_RGBA, frame_id, stamp)]


def task_markers(env: Any, threshold: float, goal_diameter: float, frame_id: str,
                 stamp: Any) -> list[Marker]:
    """Markers of a trpo_ros env's scene: goal and end effector, and the push task's cube."""
    markers = reach_markers(env.goal, env.ee_position(), threshold, goal_diameter, frame_id,
                            stamp)
    if hasattr(env, 'object_pose'):
        markers.append(object_marker(np.concatenate(env.object_pose()), env.task.object_size,
                                     frame_id, stamp))
    return markers


def object_marker(pose: np.ndarray, size: float, frame_id: str, stamp: Any) -> Marker:
    """Build the CUBE marker ('object', id 2) of an object pose [x, y, z, qx, qy, qz, qw]."""
    marker = _marker('object', 2, Marker.CUBE, OBJECT_RGBA, frame_id, stamp)
    p, q = marker.pose.position, marker.pose.orientation
    p.x, p.y, p.z, q.x, q.y, q.z, q.w = (float(v) for v in pose)
    marker.scale.x = marker.scale.y = marker.scale.z = float(size)
    return marker


def robot_description_in_world(info: dict[str, Any], frame_id: str = 'world') -> str:
    """
    Return the env's URDF with a fixed joint `frame_id` -> root link at the env's base pose.

    robot_state_publisher then publishes the frame_id -> base transform itself, so rviz2 can use
    `frame_id` (where the goal and end-effector markers live) as its fixed frame.
    """
    text = str(info['robot_description'])
    root = ET.fromstring(text.encode())
    children = {j.find('child').get('link') for j in root.iter('joint')
                if j.find('child') is not None}
    roots = [link.get('name') for link in root.findall('link')
             if link.get('name') not in children]
    if not roots or frame_id in roots:
        return text
    x, y, z = (float(v) for v in info.get('base_position', (0.0, 0.0, 0.0)))
    roll, pitch, yaw = _quaternion_to_rpy(info.get('base_orientation', (0.0, 0.0, 0.0, 1.0)))
    addition = (f'  <link name="{frame_id}"/>\n'
                f'  <joint name="{frame_id}_to_{roots[0]}" type="fixed">\n'
                f'    <parent link="{frame_id}"/>\n    <child link="{roots[0]}"/>\n'
                f'    <origin xyz="{x:.6g} {y:.6g} {z:.6g}" '
                f'rpy="{roll:.6g} {pitch:.6g} {yaw:.6g}"/>\n  </joint>\n')
    end = text.rfind('</robot>')
    return text[:end] + addition + text[end:]


def _quaternion_to_rpy(quaternion: Sequence[float]) -> tuple[float, float, float]:
    """URDF roll, pitch, yaw (fixed-axis XYZ) of a unit quaternion [x, y, z, w]."""
    qx, qy, qz, qw = (float(v) for v in quaternion)
    roll = math.atan2(2 * (qw * qx + qy * qz), 1 - 2 * (qx * qx + qy * qy))
    pitch = math.asin(max(-1.0, min(1.0, 2 * (qw * qy - qz * qx))))
    yaw = math.atan2(2 * (qw * qz + qx * qy), 1 - 2 * (qy * qy + qz * qz))
    return roll, pitch, yaw


def destroy_entities(node: Any, entities: Sequence[Any]) -> None:
    """Destroy a node's timers, publishers and subscriptions (a timer is cancelled first)."""
    for entity in entities:
        if hasattr(entity, 'cancel'):
            entity.cancel()
            node.destroy_timer(entity)
        elif hasattr(entity, 'publish'):
            node.destroy_publisher(entity)
        else:
            node.destroy_subscription(entity)
