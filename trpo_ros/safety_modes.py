"""
Deployment safety modes: standby, active, hold and a latched e-stop, without ROS.

A robot never moves on a policy's command until someone asks for it:

- ``standby`` (the default start mode): the policy runs on the live state, its output is only
  previewed; the robot is sent the hold (the newest measured pose in position mode, zeros in
  velocity/effort mode).
- ``active``: the policy commands. Entering it hands over smoothly: each step changes each
  joint by at most ``handover_rate`` × control period until the command meets the policy's,
  from the measured pose (position mode) or from zero (velocity/effort mode).
- ``hold``: freeze at the pose measured when ``hold`` was entered (zeros in velocity/effort
  mode).
- ``estop``: freeze as ``hold`` (zeros in velocity/effort mode), latched until
  :meth:`SafetyModes.request` ``('reset_estop')``, which returns to ``standby``. Entered on
  request, or by :meth:`SafetyModes.check_measured` and :meth:`SafetyModes.after_step`.

:class:`trpo_ros.serving.PolicyServer` asks this class what to send at every step; the node
maps services and topics onto :meth:`request`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MODES = ('standby', 'active', 'hold', 'estop')
REQUESTS = ('standby', 'active', 'hold', 'estop', 'reset_estop')


@dataclass
class SafetyLimits:
    """
    When the e-stop trips by itself, and how fast a hand-over ramps.

    Attributes
    ----------
        handover_rate: largest command change per second while handing over (rad/s in
            position and velocity mode, N·m/s in effort mode); > 0.
        estop_after_faults: consecutive fault holds in ``active`` that trip the e-stop
            (waiting for a goal does not count); 0 = off.
        estop_limit_margin: a measured joint position this far outside the model's joint
            limits trips the e-stop (rad); < 0 = off.
        estop_command_step: a policy command that changes by more than this from the previous
            command in one step trips the e-stop (command units); 0 = off.

    """

    handover_rate: float = 0.5
    estop_after_faults: int = 50
    estop_limit_margin: float = 0.05
    estop_command_step: float = 0.5

    def check(self) -> str:
        """Return why these limits are invalid, or ''."""
        if not self.handover_rate > 0:
            return f'handover_rate must be > 0, got {self.handover_rate}'
        if self.estop_after_faults < 0:
            return f'estop_after_faults must be >= 0, got {self.estop_after_faults}'
        if not self.estop_command_step >= 0:
            return f'estop_command_step must be >= 0, got {self.estop_command_step}'
        return ''


class SafetyModes:
    """The mode state machine of one served robot (see the module docstring)."""

    def __init__(self, start_mode: str = 'standby', limits: SafetyLimits | None = None) -> None:
        if start_mode not in ('standby', 'active', 'hold'):
            raise ValueError(f"start mode must be 'standby', 'active' or 'hold', got "
                             f'{start_mode!r}')
        self.limits = limits or SafetyLimits()
        self.start_mode = start_mode
        self.mode = 'standby'
        self.estop_reason = ''
        self.handing_over = False
        self.frozen: np.ndarray | None = None  # the pose hold/estop keep (position mode)
        self.consecutive_faults = 0
        self.transitions = 0
        self._enter(start_mode)

    # --------------------------------------------------------------------------- requests
    def request(self, name: str, measured: np.ndarray | None = None) -> tuple[bool, str]:
        """
        Ask for a mode ('standby', 'active', 'hold', 'estop') or 'reset_estop'.

        `measured` (the newest joint positions) is the pose hold and e-stop freeze at; without
        it they freeze at the next one. Returns (accepted, what happened).
        """
        if name not in REQUESTS:
            return False, f'unknown mode request {name!r} (expected one of {", ".join(REQUESTS)})'
        if name == 'estop':
            self.trip('requested', measured)
            return True, 'e-stop (latched until reset_estop)'
        if name == 'reset_estop':
            if self.mode != 'estop':
                return False, f'not in e-stop (mode {self.mode})'
            self.estop_reason = ''
            self._enter('standby')
            return True, 'e-stop reset: standby'
        if self.mode == 'estop':
            return False, f'e-stop latched ({self.estop_reason}): call reset_estop first'
        if name == self.mode:
            return True, f'already {name}'
        self._enter(name, measured)
        return True, name + (': handing over' if name == 'active' else '')

    def trip(self, reason: str, measured: np.ndarray | None = None) -> None:
        """Enter the latched e-stop (the first reason is kept until the reset)."""
        if self.mode != 'estop':
            self.estop_reason = reason
            self._enter('estop', measured)

    def restart(self) -> None:
        """After a lifecycle deactivation: back to the start mode, unless e-stopped."""
        if self.mode != 'estop':
            self._enter(self.start_mode)

    def _enter(self, mode: str, measured: np.ndarray | None = None) -> None:
        self.mode = mode
        self.handing_over = mode == 'active'
        self.frozen = None if measured is None else np.array(measured, np.float64)
        self.consecutive_faults = 0
        self.transitions += 1

    # ------------------------------------------------------------------------------ steps
    def check_measured(self, positions: np.ndarray, low: np.ndarray | None,
                       high: np.ndarray | None) -> None:
        """Trip the e-stop if a measured joint is outside [low, high] by more than the margin."""
        margin = self.limits.estop_limit_margin
        if low is None or high is None or margin < 0 or self.mode == 'estop':
            return
        outside = np.maximum(low - positions, positions - high)
        worst = int(np.argmax(outside))
        if outside[worst] > margin:
            self.trip(f'joint {worst} measured {positions[worst]:.3f} rad, outside its limits '
                      f'[{low[worst]:.3f}, {high[worst]:.3f}] by more than '
                      f'{margin:g} rad')

    def freeze_at(self, positions: np.ndarray) -> np.ndarray:
        """Return the pose hold/estop keep (`positions` if none was measured at the entry)."""
        if self.frozen is None:
            self.frozen = np.array(positions, np.float64)
        return self.frozen

    def handover_step(self, period: float) -> float:
        """Largest command change this step while handing over (0 when handed over)."""
        return self.limits.handover_rate * period if self.handing_over else 0.0

    def command_jump(self, command: np.ndarray, previous: np.ndarray | None) -> str:
        """Return why a handed-over policy command jumps too far (and trip), or ''."""
        bound = self.limits.estop_command_step
        if bound <= 0 or previous is None or self.handing_over:
            return ''
        jump = np.abs(command - previous)
        worst = int(np.argmax(jump))
        if jump[worst] <= bound:
            return ''
        why = (f'policy command of joint {worst} changed by {jump[worst]:.3f} in one step '
               f'(estop_command_step {bound:g})')
        self.trip(why)
        return why

    def after_step(self, fault: str, severity: str, handed_over: bool) -> None:
        """Count consecutive fault holds in active (trip at the limit); end a done hand-over."""
        if self.mode != 'active':
            return
        if handed_over:
            self.handing_over = False
        if not fault:
            self.consecutive_faults = 0
            return
        if severity != 'error':  # waiting for a goal is not a fault of the robot
            return
        self.consecutive_faults += 1
        self.handing_over = True  # after a hold, the policy takes over smoothly again
        limit = self.limits.estop_after_faults
        if limit and self.consecutive_faults >= limit:
            self.trip(f'{self.consecutive_faults} consecutive fault holds ({fault})')
