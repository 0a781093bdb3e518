"""
Load an exported trpo_ros ONNX policy and act with it: numpy + onnxruntime only.

This is what a robot runs. It never imports torch (nor rclpy); the ROS inference node is a thin
adapter around :class:`Policy`. Everything the policy needs (observation normalization, forward
kinematics for arm envs, action scaling, clipping, delta -> absolute position targets) is inside
the ONNX graph written by :mod:`trpo_ros.export`; the metadata says how to feed it::

    policy = Policy.load('policy.onnx')
    obs = np.array([...], np.float32)      # laid out as policy.input_names
    command = policy.act(obs)               # laid out as policy.joint_names, in command units
"""

from __future__ import annotations

from dataclasses import dataclass, field
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from trpo_ros.errors import UserError

SUPPORTED_FORMATS = (1,)
"""Values of the `trpo_ros_format` metadata key this runtime can serve."""

_REQUIRED_KEYS = ('input_names', 'joint_names', 'action_low', 'action_high', 'control_mode',
                  'control_rate_hz', 'env_id')


class PolicyError(UserError):
    """A policy file or an observation that cannot be used; the one-line message says why."""


def _one_line(exc: BaseException, limit: int = 200) -> str:
    """Class name plus the first line of an exception message, shortened."""
    text = str(exc).strip().splitlines()
    first = text[0] if text else ''
    if len(first) > limit:
        first = first[:limit] + '...'
    return f'{exc.__class__.__name__}: {first}' if first else exc.__class__.__name__


def session_options() -> ort.SessionOptions:
    """Single-threaded, sequential onnxruntime options: the lowest latency for small MLPs."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only; warnings would go to the robot's stderr
    return options


@dataclass(eq=False)
class Policy:
    """
    An exported policy ready to act. Build it with :meth:`Policy.load`.

    Attributes
    ----------
        path: the ONNX file.
        input_names: names of the observation entries, in input order (`obs_dim` of them).
        joint_names: controlled joints, in action order (`action_dim` of them).
        action_low: lower bound of each command, float32 (the graph already clips to it).
        action_high: upper bound of each command, float32.
        control_mode: what the command means on the robot: 'position' | 'velocity' | 'torque'
            (or 'raw' for plain gym envs without a robot).
        control_rate_hz: rate the policy was trained at (commands per second).
        env_id: Gymnasium id of the training environment.
        metadata: every metadata entry, JSON-decoded (config, obs_names, ee_link, ...).
        obs_dim: length of one observation.
        action_dim: length of one action.

    """

    path: Path
    input_names: list[str]
    joint_names: list[str]
    action_low: np.ndarray
    action_high: np.ndarray
    control_mode: str
    control_rate_hz: float
    env_id: str
    metadata: dict[str, Any] = field(repr=False)
    obs_dim: int
    action_dim: int
    _session: ort.InferenceSession = field(repr=False)
    _input_name: str = field(repr=False)
    _output_names: list[str] = field(repr=False)
    _zeros: np.ndarray = field(init=False, repr=False)
    _run: Any = field(init=False, repr=False)
    _run_options: Any = field(init=False, repr=False)

    def __post_init__(self) -> None:
        """Pick the fastest way to run the session."""
        # InferenceSession.run re-validates the feed names on every call and wraps the C++
        # session; we validated the input once in load(), so call the C++ session directly
        # (about 2 us of 10 per batch-1 call). Fall back to the public API if it is not there.
        self._zeros = np.zeros(self.obs_dim, np.float32)
        inner = getattr(self._session, '_sess', None)
        if inner is not None and callable(getattr(inner, 'run', None)):
            self._run, self._run_options = inner.run, ort.RunOptions()
        else:
            self._run, self._run_options = self._run_public, None

    def _run_public(self, names: list[str], feed: dict[str, np.ndarray], _options: Any) -> list:
        return self._session.run(names, feed)

    @classmethod
    def load(cls, path: str | Path) -> Policy:
        """
        Open and validate an exported policy file.

        Raises
        ------
            PolicyError: the file is missing, is not ONNX, is not a trpo_ros export, or its
                graph does not match its metadata.

        """
        path = Path(path)
        if not path.exists():
            raise PolicyError(f'policy file not found: {path}')
        if not path.is_file():
            raise PolicyError(f'policy path is not a file: {path}')
        try:
            session = ort.InferenceSession(str(path), sess_options=session_options(),
                                           providers=['CPUExecutionProvider'])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises several unrelated types
            raise PolicyError(f'{path} is not a loadable ONNX model ({_one_line(exc)})') from None
        raw = session.get_modelmeta().custom_metadata_map
        if 'trpo_ros_format' not in raw:
            raise PolicyError(f'{path} is an ONNX model but not a trpo_ros policy '
                              '(no trpo_ros_format metadata)')
        metadata: dict[str, Any] = {}
        for key, value in raw.items():
            try:
                metadata[key] = json.loads(value)
            except ValueError:
                raise PolicyError(f'{path}: metadata {key!r} is not valid JSON') from None
        if metadata['trpo_ros_format'] not in SUPPORTED_FORMATS:
            raise PolicyError(f"{path}: trpo_ros_format {metadata['trpo_ros_format']!r} is not "
                              f'supported (this runtime reads {list(SUPPORTED_FORMATS)})')
        missing = [k for k in _REQUIRED_KEYS if k not in metadata]
        if missing:
            raise PolicyError(f'{path}: metadata lacks {", ".join(missing)}')
        input_names = _str_list(path, metadata, 'input_names')
        joint_names = _str_list(path, metadata, 'joint_names')
        inputs, outputs = session.get_inputs(), session.get_outputs()
        if len(inputs) != 1 or len(outputs) < 1:
            raise PolicyError(f'{path}: expected one input and an output, graph has '
                              f'{len(inputs)} inputs and {len(outputs)} outputs')
        obs_dim = _feature_dim(path, 'input', inputs[0])
        action_dim = _feature_dim(path, 'output', outputs[0])
        if obs_dim != len(input_names):
            raise PolicyError(f'{path}: graph input has {obs_dim} entries but metadata '
                              f'input_names lists {len(input_names)}')
        if action_dim != len(joint_names):
            raise PolicyError(f'{path}: graph output has {action_dim} entries but metadata '
                              f'joint_names lists {len(joint_names)}')
        if inputs[0].type != 'tensor(float)':
            raise PolicyError(f'{path}: graph input is {inputs[0].type}, expected tensor(float)')
        bounds = []
        for key, open_end in (('action_low', -np.inf), ('action_high', np.inf)):
            raw_values = metadata[key]
            if not isinstance(raw_values, list):
                raise PolicyError(f'{path}: metadata {key} is not a list')
            try:  # null marks an unbounded dimension
                values = np.array([open_end if v is None else float(v) for v in raw_values],
                                  dtype=np.float32)
            except (TypeError, ValueError):
                raise PolicyError(f'{path}: metadata {key} is not a list of numbers') from None
            if values.shape != (action_dim,):
                raise PolicyError(f'{path}: metadata {key} has {values.size} entries, '
                                  f'expected {action_dim}')
            bounds.append(values)
        try:
            rate = float(metadata['control_rate_hz'])
        except (TypeError, ValueError):
            raise PolicyError(f'{path}: metadata control_rate_hz is not a number') from None
        return cls(path=path, input_names=input_names, joint_names=joint_names,
                   action_low=bounds[0], action_high=bounds[1],
                   control_mode=str(metadata['control_mode']), control_rate_hz=rate,
                   env_id=str(metadata['env_id']), metadata=metadata, obs_dim=obs_dim,
                   action_dim=action_dim, _session=session, _input_name=inputs[0].name,
                   _output_names=[outputs[0].name])

    def act(self, obs: Any) -> np.ndarray:
        """
        Command(s) in command units: 1-D obs -> 1-D action, 2-D batch -> 2-D batch.

        Raises
        ------
            PolicyError: wrong shape or a NaN/Inf entry.

        """
        x = np.asarray(obs, dtype=np.float32)
        if x.ndim == 1:
            if x.shape[0] != self.obs_dim:
                raise PolicyError(f'observation has {x.shape[0]} entries, '
                                  f'policy expects {self.obs_dim}')
            # x . 0 is 0 when every entry is finite and NaN otherwise (0 * Inf = NaN); it never
            # overflows and costs half of np.isfinite(x).all() for one observation (vdot, unlike
            # dot, raises no RuntimeWarning on Inf).
            if not math.isfinite(np.vdot(x, self._zeros)):
                self._reject_non_finite(x.reshape(1, -1))
            if not x.flags.c_contiguous:
                x = np.ascontiguousarray(x)
            return self._run(self._output_names, {self._input_name: x.reshape(1, -1)},
                             self._run_options)[0][0]
        if x.ndim != 2:
            raise PolicyError(f'observation must be 1-D or 2-D, got shape {x.shape}')
        if x.shape[1] != self.obs_dim:
            raise PolicyError(f'observation batch has {x.shape[1]} columns, '
                              f'policy expects {self.obs_dim}')
        if not np.isfinite(x).all():
            self._reject_non_finite(x)
        if not x.flags.c_contiguous:
            x = np.ascontiguousarray(x)
        return self._run(self._output_names, {self._input_name: x}, self._run_options)[0]

    def _reject_non_finite(self, x: np.ndarray) -> None:
        bad = int(np.flatnonzero(~np.isfinite(x).all(axis=0))[0])
        raise PolicyError(f'observation contains NaN or Inf (first at {self.input_names[bad]})')


def _str_list(path: Path, metadata: dict[str, Any], key: str) -> list[str]:
    value = metadata[key]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise PolicyError(f'{path}: metadata {key} is not a list of strings')
    return value


def _feature_dim(path: Path, which: str, node: Any) -> int:
    shape = node.shape
    if len(shape) != 2 or not isinstance(shape[1], int):
        raise PolicyError(f'{path}: graph {which} {node.name!r} has shape {shape}, '
                          'expected [batch, n] with a fixed n')
    return int(shape[1])
