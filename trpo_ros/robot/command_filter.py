"""
The one command filter: every piece of code that sends commands to a robot uses it.

A command (joint positions, velocities or efforts, one per joint) passes, in this order:

1. **bounds** — clipped to [low, high] (the joint limits in position mode);
2. **velocity cap** (position mode, `max_step`) — at most `max_step` per joint from the
   *measured* position, i.e. the velocity limit times the control period;
3. **largest change per step** (`max_delta`) — at most `max_delta` from the *previous command*;
4. **workspace box** (position mode, `workspace` + `fk`) — a target whose forward-kinematics
   end-effector position leaves the box, and does not move back towards it, is replaced by
   the measured position (a hold).

numpy only, no state but the previous command; the ROS env and inference_node build one each.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


@dataclass
class FilterResult:
    """A filtered command and what the filter did to it."""

    command: np.ndarray
    velocity_capped: bool = False
    delta_limited: bool = False
    workspace_hold: bool = False


@dataclass
class CommandFilter:
    """
    Bounds, velocity cap, largest change per step and workspace box (see the module docstring).

    Attributes
    ----------
        low, high: command bounds per joint (±inf where unbounded).
        max_delta: largest change from the previous command per step; 0 = off.
        max_step: largest change from the measured position per step (position mode); None =
            off.
        workspace: ((x, y, z) low, (x, y, z) high) box for the end effector; None = off.
        fk: joint positions -> end-effector position, needed with `workspace`.

    """

    low: np.ndarray
    high: np.ndarray
    max_delta: float = 0.0
    max_step: np.ndarray | None = None
    workspace: np.ndarray | None = None
    fk: Callable[[np.ndarray], np.ndarray] | None = None
    previous: np.ndarray | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        """Check the shapes once."""
        self.low = np.asarray(self.low, np.float64)
        self.high = np.asarray(self.high, np.float64)
        if self.low.shape != self.high.shape or np.any(self.low > self.high):
            raise ValueError(f'bounds must have one shape with low <= high, got {self.low} '
                             f'and {self.high}')
        if self.workspace is not None:
            box = np.asarray(self.workspace, np.float64)
            if box.shape != (2, 3) or np.any(box[0] > box[1]) or self.fk is None:
                raise ValueError('workspace must be ((x, y, z) low, (x, y, z) high) and needs '
                                 f'fk, got {self.workspace!r}')
            self.workspace = box

    def reset(self) -> None:
        """Forget the previous command (the next one is limited by bounds only)."""
        self.previous = None

    def __call__(self, command: np.ndarray, measured: np.ndarray | None = None) -> FilterResult:
        """Filter one command; `measured` (joint positions) is needed by the cap and the box."""
        out = np.clip(np.asarray(command, np.float64), self.low, self.high)
        result = FilterResult(out)
        if self.max_step is not None and measured is not None:
            step = np.clip(out - measured, -self.max_step, self.max_step)
            result.velocity_capped = bool(np.any(step != out - measured))
            out = measured + step
        if self.max_delta > 0 and self.previous is not None:
            limited = np.clip(out, self.previous - self.max_delta,
                              self.previous + self.max_delta)
            result.delta_limited = bool(np.any(limited != out))
            out = limited
        if self.workspace is not None and measured is not None:
            outside = box_distance(self.fk(out), self.workspace)
            if outside > 0.0 and outside >= box_distance(self.fk(measured),
                                                         self.workspace) - 1e-9:
                result.workspace_hold = True
                out = np.asarray(measured, np.float64).copy()
        result.command = out
        self.previous = out
        return result


def box_distance(point: np.ndarray, box: np.ndarray) -> float:
    """Euclidean distance from `point` to the box (0 inside)."""
    return float(np.linalg.norm(np.maximum(0.0, np.maximum(box[0] - point, point - box[1]))))
