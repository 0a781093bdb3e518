"""
What inference_node declares rather than does: parameters, their checks, the status line.

The parameter table, the check of a parameter change, and the level and message of its
/diagnostics. Kept apart from the node so that the node file stays an adapter.
"""

from __future__ import annotations

from typing import Any

from trpo_ros.errors import ParameterError
from trpo_ros.nodes.conversions import ERROR, OK, reliability_policy, WARN
from trpo_ros.safety_modes import SafetyLimits, SafetyModes

DEFAULT_COMMAND_TOPIC = '/forward_position_controller/commands'

PARAMETERS: dict[str, tuple[Any, str]] = {
    'model_path': ('', 'exported policy (.onnx); set at run time to hot-swap the model'),
    'autostart': (True, 'configure and activate at start-up'),
    'command_topic': (DEFAULT_COMMAND_TOPIC, 'Float64MultiArray command topic'),
    'command_reliability': ('reliable', "command QoS: 'reliable' or 'best_effort'"),
    'state_topic': ('/joint_states', 'sensor_msgs/JointState input'),
    'goal_topic': ('/trpo/goal', 'geometry_msgs/PointStamped reach goal (volatile or '
                                 'transient-local publishers; /clicked_point for rviz2)'),
    'goal': ([], 'reach goal [x, y, z] in base_frame (overrides until the next goal msg)'),
    'base_frame': ('world', 'frame of the goal and the object pose; one in another frame is '
                            'rejected (an empty frame_id counts as this one)'),
    'object_topic': ('/trpo/object_pose', 'geometry_msgs/PoseStamped object pose, for models '
                                          'that take one (push); best-effort QoS'),
    'object_timeout': (0.5, 'seconds an object pose stays usable; older: hold and ERROR'),
    'robot_description_topic': ('/robot_description', 'URDF (std_msgs/String, transient '
                                'local) checked against the limits of the model; empty = no '
                                'check'),
    'accept_tighter_limits': (False, 'serve although /robot_description has tighter joint '
                                     'limits than the model (commands are clipped to them)'),
    'publish_on_state': (False, 'publish one command per JointState instead of on a timer'),
    'control_rate_hz': (0.0, 'command rate; 0 = the rate the model was trained at'),
    'obs_timeout': (0.5, 'seconds without a JointState before holding and reporting ERROR'),
    'max_delta': (0.0, 'largest change of a command per step (0 = off)'),
    'diagnostics_period': (1.0, 'seconds between /diagnostics messages'),
    'start_mode': ('standby', "mode at start and after a lifecycle re-activation: 'standby' "
                              "(no policy command until ~/activate_policy), 'active' or 'hold'"),
    'handover_rate': (0.5, 'largest command change per second while handing over to the '
                           'policy (rad/s)'),
    'estop_after_faults': (50, 'consecutive fault holds in active that latch the e-stop (0 = '
                               'off)'),
    'estop_limit_margin': (0.05, 'a measured joint this far outside the model limits latches '
                                 'the e-stop (rad; < 0 = off)'),
    'estop_command_step': (0.5, 'a policy command changing more than this in one step latches '
                                'the e-stop (0 = off)'),
}
"""Declared parameters: name -> (default, description)."""


def safety_limits(params: dict[str, Any]) -> SafetyLimits:
    """Build the safety limits from the parameters (ParameterError when invalid)."""
    try:
        limits = SafetyLimits(float(params['handover_rate']), int(params['estop_after_faults']),
                              float(params['estop_limit_margin']),
                              float(params['estop_command_step']))
    except (TypeError, ValueError) as exc:
        raise ParameterError(f'safety parameters: {exc}') from None
    why = limits.check()
    if why:
        raise ParameterError(why)
    return limits


def safety_modes(params: dict[str, Any]) -> SafetyModes:
    """Build the node's safety modes from the parameters (ParameterError when invalid)."""
    try:
        return SafetyModes(str(params['start_mode']), safety_limits(params))
    except ValueError as exc:
        raise ParameterError(f'parameter start_mode: {exc}') from None


def apply_to_server(server: Any, params: dict[str, Any], changed: Any) -> str:
    """Give the PolicyServer the `changed` parameters' values; returns a limits refusal or ''."""
    if any(name.startswith(('handover_', 'estop_')) for name in changed):
        server.modes.limits = safety_limits(params)
    server.object_timeout = float(params['object_timeout'])
    if 'accept_tighter_limits' in changed:
        server.accept_tighter_limits = bool(params['accept_tighter_limits'])
        return server.check_limits()
    return ''


def check_change(name: str, value: Any, params: dict[str, Any]) -> str:
    """Return why setting `name` to `value` at run time is refused, or ''."""
    if name == 'command_reliability':
        try:
            reliability_policy(str(value))
        except ValueError as exc:
            return str(exc)
    elif name in ('obs_timeout', 'max_delta', 'object_timeout') and (
            not isinstance(value, (int, float)) or not value >= 0):
        return f'{name} must be >= 0'
    elif name == 'start_mode':
        return 'start_mode is read at start; use the mode services to switch'
    elif name.startswith(('handover_', 'estop_')):
        try:
            safety_limits({**params, name: value})
        except ParameterError as exc:
            return str(exc)
    return ''


MODE_MESSAGES = {
    'standby': 'standby: the policy is previewed on ~/policy_preview, the hold is sent '
               '(~/activate_policy hands over)',
    'hold': 'hold: frozen at the pose measured when hold began',
}


def status_of(*, contained: dict[str, str], model_error: str, lifecycle: str,
              modes: SafetyModes, faults: dict[str, Any], fail_closed: bool, waiting_for: str,
              rate: float) -> tuple[Any, str]:
    """Return (level, message) of the node's diagnostics: the most serious fact first."""
    if contained:
        return ERROR, 'contained ' + '; '.join(contained.values())
    if model_error:
        return ERROR, f'no model: {model_error}'
    if lifecycle != 'active':
        return WARN, f'{lifecycle}: not commanding'
    if modes.mode == 'estop':
        return ERROR, f'e-stop latched: {modes.estop_reason} (~/reset_estop)'
    if faults:
        prefix = 'no command sent yet (fail closed): ' if fail_closed else 'holding: '
        return max(faults.values()), prefix + '; '.join(faults)
    if waiting_for:
        return WARN, f'waiting for {waiting_for}'
    if modes.mode != 'active':
        return (WARN if modes.mode == 'hold' else OK), MODE_MESSAGES[modes.mode]
    return OK, f'serving at {rate:.1f} Hz'
