"""
Export a trained policy to ONE ONNX graph the robot can run with onnxruntime alone.

The graph, input ``obs`` float32 [batch, len(input_names)] -> output ``action`` float32
[batch, len(joint_names)]::

    robot obs ──► (arm envs) ee_pos = FK(joint_pos)  ──► env obs layout
              ──► ObsNormalizer (frozen, clipped) ──► actor mean ──► ActionScaler (clip to bounds)
              ──► (position_delta envs) + current joint positions, clip to joint limits
              ──► action in command units

Arm envs (``env_info`` = the env's ``spec_info()``): the robot does not publish ``ee_pos/*``,
so the input is the env observation without those entries and the graph computes them with
forward kinematics (float64, built from :class:`trpo_ros.robot.kinematics.KinematicChain`).
For ``position_delta`` envs the output is the absolute joint position target and the exported
``control_mode`` is ``'position'``.

Plain gym envs (``env_info == {}``, e.g. Pendulum-v1): input = the full env observation, names
``obs/0..n-1``; output names ``action/0..m-1``; ``control_mode`` ``'torque'`` and
``env_control_mode`` ``'raw'`` (the command is the env's raw action, a torque/effort for Pendulum
and the usual locomotion envs); ``control_rate_hz`` is 1 / env.dt when the env has a ``dt``,
else 0.0 (unknown); no FK.

Every export is verified before it replaces the target file: ``onnx.checker``, then
onnxruntime (through :class:`trpo_ros.runtime.Policy`, as on the robot) against
:func:`reference_action` on a few hundred observations around the training distribution, a
few far outside it, in batches of 1 and 64. A failure leaves any existing file untouched.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
import contextlib
import json
import logging
import math
import os
from pathlib import Path
import time
from typing import Any

import numpy as np
import torch
from torch import nn
import trpo_ros
from trpo_ros.core.checkpoint import (
    atomic_write_bytes,
    CheckpointError,
    load_policy,
    PolicyBundle,
)
from trpo_ros.errors import UserError
from trpo_ros.robot.kinematics import forward_kinematics, KinematicChain

OPSET = 18
"""ONNX opset the graph is exported with (pinned so exports are reproducible)."""
FORMAT = 1
"""Value of the `trpo_ros_format` metadata key (read by trpo_ros.runtime)."""
TOLERANCE = 1e-5
"""Maximum abs difference between onnxruntime and the torch reference, in command units."""
MOVABLE = ('revolute', 'continuous', 'prismatic')

log = logging.getLogger(__name__)


class ExportError(UserError):
    """The policy cannot be exported, or the export failed verification; the message says why."""


# --------------------------------------------------------------------------- layout helpers


def env_obs_names(bundle: PolicyBundle) -> list[str]:
    """Names of the env observation entries (spec_info obs_names, else `obs/<i>`)."""
    obs_dim = int(bundle.policy.normalizer.mean.numel())
    names = bundle.env_info.get('obs_names')
    if names is None:
        return [f'obs/{i}' for i in range(obs_dim)]
    if len(names) != obs_dim:
        raise ExportError(f'env_info obs_names lists {len(names)} entries but the policy '
                          f'takes {obs_dim}')
    return list(names)


def input_names(bundle: PolicyBundle) -> list[str]:
    """Names of the ONNX input entries: the env observation without `ee_pos/*`."""
    return [n for n in env_obs_names(bundle) if not n.startswith('ee_pos/')]


def input_sources(bundle: PolicyBundle) -> list[dict[str, Any]]:
    """
    Where a robot gets each model input: message type, default topic, frame, input columns.

    From the task's `sources` (spec_info); [] for envs that have none. The frame is the one the
    model's positions are in (the robot base placed as in training, 'world').
    """
    names = input_names(bundle)
    return [{**source, 'frame': 'world',
             'columns': [c for c in source['columns'] if c in names]}
            for source in bundle.env_info.get('sources', [])]


def joint_names(bundle: PolicyBundle) -> list[str]:
    """Names of the action entries (controlled joints, or `action/<i>` for plain envs)."""
    n_act = int(bundle.policy.scaler.center.numel())
    names = bundle.env_info.get('joint_names')
    if names is None:
        return [f'action/{i}' for i in range(n_act)]
    if len(names) != n_act:
        raise ExportError(f'env_info joint_names lists {len(names)} joints but the policy '
                          f'has {n_act} actions')
    return list(names)


def _is_delta(bundle: PolicyBundle) -> bool:
    return bundle.env_info.get('control_mode') == 'position_delta'


def _joint_columns(names: Sequence[str], joints: Sequence[str]) -> list[int]:
    """Column of `joint_pos/<joint>` in `names` for each joint."""
    missing = [j for j in joints if f'joint_pos/{j}' not in names]
    if missing:
        raise ExportError(f'observation lacks joint_pos for {missing}')
    return [list(names).index(f'joint_pos/{j}') for j in joints]


def env_obs_to_input(bundle: PolicyBundle, env_obs: np.ndarray) -> np.ndarray:
    """Drop the `ee_pos/*` entries of env observation(s): what the ONNX input looks like."""
    names = env_obs_names(bundle)
    keep = [i for i, n in enumerate(names) if not n.startswith('ee_pos/')]
    return np.asarray(env_obs, np.float32)[..., keep]


def input_to_env_obs(bundle: PolicyBundle, obs: np.ndarray) -> np.ndarray:
    """Rebuild env observation(s) from ONNX input(s), computing `ee_pos/*` with numpy FK."""
    names = env_obs_names(bundle)
    inputs = input_names(bundle)
    x = np.asarray(obs, np.float32)
    single = x.ndim == 1
    x = x.reshape(1, -1) if single else x
    full = np.zeros((x.shape[0], len(names)), np.float32)
    for col, name in enumerate(inputs):
        full[:, names.index(name)] = x[:, col]
    ee_cols = [names.index(f'ee_pos/{a}') for a in 'xyz' if f'ee_pos/{a}' in names]
    if ee_cols:
        info = bundle.env_info
        chain = info['fk_chain']
        chain_joints = [j['joint_name'] for j in chain if j['type'] in MOVABLE]
        present = [j for j in chain_joints if f'joint_pos/{j}' in inputs]
        cols = _joint_columns(inputs, present)
        for row in range(x.shape[0]):
            q = x[row, cols].astype(np.float64)
            ee = forward_kinematics(chain, q, info.get('base_position', (0.0, 0.0, 0.0)),
                                    info.get('base_orientation', (0.0, 0.0, 0.0, 1.0)),
                                    joint_names=present)
            full[row, ee_cols] = ee
    return full[0] if single else full


def action_bounds(bundle: PolicyBundle) -> tuple[np.ndarray, np.ndarray]:
    """Bounds of the exported command (joint limits for position_delta), float32, +-inf open."""
    if _is_delta(bundle):
        low = np.asarray(bundle.env_info['joint_lower'], np.float32)
        high = np.asarray(bundle.env_info['joint_upper'], np.float32)
        return low, high
    bounded = bundle.policy.scaler.bounded.numpy()
    center, half = bundle.policy.scaler.center.numpy(), bundle.policy.scaler.half_range.numpy()
    low = np.where(bounded, center - half, -np.inf).astype(np.float32)
    high = np.where(bounded, center + half, np.inf).astype(np.float32)
    return low, high


def reference_action(bundle: PolicyBundle, env_obs: np.ndarray) -> np.ndarray:
    """
    Return THE deterministic action in command units for env observation(s) (float32).

    `bundle.act` (normalizer -> actor mean -> scaler); for position_delta envs the delta is
    added to the current joint positions and clipped to the joint limits, which is what the
    exported graph outputs. 1-D in -> 1-D out, 2-D -> 2-D. Tests and evaluation use this.
    """
    env_obs = np.asarray(env_obs, np.float32)
    action = np.asarray(bundle.act(env_obs), np.float32)
    if _is_delta(bundle):
        cols = _joint_columns(env_obs_names(bundle), joint_names(bundle))
        low, high = action_bounds(bundle)
        action = np.clip(env_obs[..., cols] + action, low, high)
    return action


# --------------------------------------------------------------------------- torch modules


class ForwardKinematics(nn.Module):
    """
    World position of the end-effector frame from joint positions, in float64.

    The matrices of :class:`trpo_ros.robot.kinematics.KinematicChain` (the one forward
    kinematics), laid out for a small ONNX graph (each ONNX node costs onnxruntime ~0.5 us,
    more than its arithmetic): all joint matrices come from ONE Gemm
    ``[cos q, sin q, q] @ W + b``, and their ordered product is a log2-depth tree of batched
    matmuls.
    """

    def __init__(self, chain: KinematicChain, obs_columns: Sequence[int]) -> None:
        """Lay out `chain`; `obs_columns[i]` is the input column of `chain.joint_names[i]`."""
        super().__init__()
        columns = [int(obs_columns[c]) if len(obs_columns) else 0 for c in chain.columns]
        m = len(chain.factors)
        size = 1 << (m - 1).bit_length()  # pad to a power of 2 with identities
        weight = np.zeros((3 * m, 16 * size))
        bias = np.tile(np.eye(4).reshape(16), size)
        for e, (cos_m, sin_m, q_m, const) in enumerate(chain.factors):
            out = slice(16 * e, 16 * e + 16)
            weight[e, out], weight[m + e, out] = cos_m.reshape(16), sin_m.reshape(16)
            weight[2 * m + e, out] = q_m.reshape(16)
            bias[out] = const.reshape(16)
        self.prismatic = bool(np.any(weight[2 * m:]))
        if not self.prismatic:
            weight = weight[: 2 * m]
        self.size = size
        self.register_buffer('columns', torch.tensor(columns))
        self.register_buffer('weight', torch.tensor(weight, dtype=torch.float64))
        self.register_buffer('bias', torch.tensor(bias, dtype=torch.float64))
        self.register_buffer('translation', torch.tensor([3, 7, 11]))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """[batch, n_in] float32 input -> [batch, 3] float64 end-effector position."""
        q = torch.index_select(obs, 1, self.columns).to(torch.float64)
        parts = [torch.cos(q), torch.sin(q), q] if self.prismatic else [torch.cos(q), torch.sin(q)]
        mats = torch.addmm(self.bias, torch.cat(parts, dim=1), self.weight)
        mats = mats.reshape(-1, self.size, 4, 4)
        while mats.shape[1] > 1:  # T_0 @ T_1 @ ... as a tree: (T_0 T_1)(T_2 T_3) ...
            mats = mats[:, 0::2] @ mats[:, 1::2]
        return torch.index_select(mats.reshape(-1, 16), 1, self.translation)


class PolicyGraph(nn.Module):
    """The exported graph as one module (see the module docstring for the stages)."""

    def __init__(self, bundle: PolicyBundle) -> None:
        super().__init__()
        policy = bundle.policy
        self.normalizer, self.actor, self.scaler = policy.normalizer, policy.actor, policy.scaler
        names, inputs = env_obs_names(bundle), input_names(bundle)
        ee_names = [f'ee_pos/{a}' for a in 'xyz']
        present = [n for n in ee_names if n in names]
        self.fk: ForwardKinematics | None = None
        if present:
            if present != ee_names:
                raise ExportError(f'observation has only some ee_pos entries: {present}')
            info = bundle.env_info
            if 'fk_chain' not in info:
                raise ExportError('env_info has ee_pos observations but no fk_chain')
            q_columns = {n[len('joint_pos/'):]: i for i, n in enumerate(inputs)
                         if n.startswith('joint_pos/')}
            chain = KinematicChain(info['fk_chain'], list(q_columns),
                                   info.get('base_position', (0.0, 0.0, 0.0)),
                                   info.get('base_orientation', (0.0, 0.0, 0.0, 1.0)))
            self.fk = ForwardKinematics(chain, list(q_columns.values()))
            # env obs = [input, ee_pos] permuted into the env order
            extended = inputs + ee_names
            self.register_buffer('perm', torch.tensor([extended.index(n) for n in names]))
        self.all_bounded = bool(bundle.policy.scaler.bounded.all())
        self.zero_center = not bool(bundle.policy.scaler.center.any())
        self.delta = _is_delta(bundle)
        if self.delta:
            cols = _joint_columns(inputs, joint_names(bundle))
            low, high = action_bounds(bundle)
            self.register_buffer('q_cols', torch.tensor(cols))
            self.register_buffer('low', torch.tensor(low))
            self.register_buffer('high', torch.tensor(high))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """[batch, n_in] float32 robot observation -> [batch, n_act] command."""
        x = obs
        if self.fk is not None:
            ee = self.fk(obs).to(obs.dtype)
            x = torch.index_select(torch.cat([obs, ee], dim=1), 1, self.perm)
        u = self.actor(self.normalizer(x))
        if self.all_bounded:  # same math as ActionScaler, without its all-true Where
            action = self.scaler.half_range * torch.clamp(u, -1.0, 1.0)
            if not self.zero_center:  # x + 0.0 == x: skip the node for symmetric bounds
                action = self.scaler.center + action
        else:
            action = self.scaler(u)
        if self.delta:
            q = torch.index_select(obs, 1, self.q_cols)
            action = torch.minimum(torch.maximum(q + action, self.low), self.high)
        return action


# --------------------------------------------------------------------------- export


def metadata(bundle: PolicyBundle) -> dict[str, Any]:
    """Metadata entries of the exported model (values are JSON-serializable)."""
    info = bundle.env_info
    low, high = action_bounds(bundle)
    env_mode = info.get('control_mode', 'raw')
    if env_mode == 'position_delta':
        mode = 'position'
    elif env_mode == 'raw':
        mode = 'torque'
    else:
        mode = env_mode
    rate = info.get('control_rate_hz')
    if rate is None:
        rate = _plain_env_rate(bundle)

    def bound(values: np.ndarray) -> list[float | None]:
        return [float(v) if np.isfinite(v) else None for v in values]

    return {
        'trpo_ros_format': FORMAT,
        'trpo_ros_version': trpo_ros.__version__,
        'env_id': bundle.config.env_id,
        'input_names': input_names(bundle),
        'sources': input_sources(bundle),
        'obs_names': env_obs_names(bundle),
        'joint_names': joint_names(bundle),
        'action_low': bound(low),
        'action_high': bound(high),
        'control_mode': mode,
        'env_control_mode': env_mode,
        'control_rate_hz': float(rate),
        'ee_link': info.get('ee_link'),
        'config': bundle.config.to_dict(),
        'success_threshold': info.get('success_threshold'),
        'iteration': bundle.iteration,
        'env_steps': bundle.env_steps,
        'robot_config': info.get('robot_config'),
    }


def _plain_env_rate(bundle: PolicyBundle) -> float:
    """1 / dt of a plain gym env when it has one (Pendulum: 20 Hz), else 0.0 = unknown."""
    try:
        import gymnasium

        env = gymnasium.make(bundle.config.env_id, **bundle.config.env_kwargs)
        try:
            dt = float(getattr(env.unwrapped, 'dt', 0.0) or 0.0)
        finally:
            env.close()
    except Exception:  # noqa: BLE001 - the rate is informative only; never fail an export on it
        return 0.0
    return 1.0 / dt if dt > 0 else 0.0


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the dynamo exporter's progress prints and registry warnings."""
    loggers = [logging.getLogger(n) for n in ('torch.onnx', 'torch._dynamo', 'torch.export')]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            with open(os.devnull, 'w') as devnull, contextlib.redirect_stdout(devnull):
                yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def build_onnx(bundle: PolicyBundle) -> bytes:
    """Serialize the ONNX model (graph + metadata) of a policy bundle; not yet verified."""
    graph = PolicyGraph(bundle).eval()
    n_in = len(input_names(bundle))
    example = torch.zeros(2, n_in, dtype=torch.float32)
    try:
        with _quiet_exporter(), torch.no_grad():
            program = torch.onnx.export(
                graph, (example,), dynamo=True, opset_version=OPSET, input_names=['obs'],
                output_names=['action'], dynamic_shapes={'obs': {0: torch.export.Dim('batch')}},
                verbose=False, optimize=True)
    except Exception as exc:  # noqa: BLE001 - report the exporter failure in one line
        first = (str(exc).strip().splitlines() or [''])[0][:200]
        raise ExportError(f'torch.onnx.export failed: {exc.__class__.__name__}: {first}') from None
    model = program.model_proto
    del model.metadata_props[:]
    for key, value in metadata(bundle).items():
        entry = model.metadata_props.add()
        entry.key = key
        entry.value = json.dumps(value, allow_nan=False)
    model.producer_name = 'trpo_ros'
    model.producer_version = trpo_ros.__version__
    model.doc_string = f'trpo_ros policy for {bundle.config.env_id}'
    return model.SerializeToString()


def verification_inputs(bundle: PolicyBundle, n: int = 300, seed: int = 0) -> np.ndarray:
    """
    ONNX inputs for the parity check: mostly mean +- 3 std of the normalizer, some far out.

    About 90% are drawn around the training distribution (normal, 3 std), the rest are
    outside it by 10 to 1000 std (they must still give bounded actions).
    """
    rng = np.random.default_rng(seed)
    names, inputs = env_obs_names(bundle), input_names(bundle)
    cols = [names.index(n) for n in inputs]
    mean = bundle.policy.normalizer.mean.numpy()[cols]
    std = np.sqrt(bundle.policy.normalizer.var.numpy()[cols] + 1e-8)
    if not bundle.policy.normalizer.enabled:
        mean, std = np.zeros_like(mean), np.ones_like(std)
    n_far = max(4, n // 10)
    near = mean + 3.0 * std * rng.standard_normal((n - n_far, len(cols)))
    scale = 10.0 ** rng.uniform(1, 3, (n_far, 1))
    far = mean + std * scale * rng.choice([-1.0, 1.0], (n_far, len(cols)))
    return np.concatenate([near, far]).astype(np.float32)


def verify(bundle: PolicyBundle, onnx_path: str | Path, n: int = 300,
           tolerance: float | None = None) -> float:
    """
    Check an exported file: onnx.checker, metadata via the runtime, parity with torch.

    Returns the max abs difference to :func:`reference_action` over batch-1 and batch-64 runs.

    Raises
    ------
        ExportError: the check fails (the message says which check and by how much).

    """
    import onnx
    from trpo_ros.runtime import Policy, PolicyError

    tolerance = TOLERANCE if tolerance is None else tolerance
    try:
        onnx.checker.check_model(str(onnx_path), full_check=True)
    except Exception as exc:  # noqa: BLE001
        first = (str(exc).strip().splitlines() or [''])[0][:200]
        raise ExportError(f'onnx.checker rejected the export: {first}') from None
    try:
        policy = Policy.load(onnx_path)
    except PolicyError as exc:
        raise ExportError(f'runtime cannot load the export: {exc}') from None
    if policy.input_names != input_names(bundle) or policy.joint_names != joint_names(bundle):
        raise ExportError('exported input/joint names differ from the policy bundle')
    obs = verification_inputs(bundle, max(n, 8))
    reference = reference_action(bundle, input_to_env_obs(bundle, obs))
    worst = 0.0
    single = np.stack([policy.act(row) for row in obs[: min(len(obs), 64)]])
    worst = max(worst, float(np.max(np.abs(single - reference[: len(single)]))))
    for start in range(0, len(obs), 64):
        batch = policy.act(obs[start:start + 64])
        worst = max(worst, float(np.max(np.abs(batch - reference[start:start + 64]))))
    if not math.isfinite(worst) or worst > tolerance:
        raise ExportError(f'onnxruntime output differs from torch by {worst:.3g} '
                          f'(tolerance {tolerance:g}) on {len(obs)} observations')
    low, high = action_bounds(bundle)
    actions = policy.act(obs)
    if np.any(actions < low) or np.any(actions > high):
        raise ExportError('exported actions leave the action bounds')
    return worst


def export_onnx(run_dir_or_checkpoint: str | Path | PolicyBundle, path: str | Path,
                n_verify: int = 300) -> Path:
    """
    Export a run's newest checkpoint (or a checkpoint file, or a bundle) to `path`.

    The model is written to a temporary file next to `path`, verified (see :func:`verify`), and
    only then renamed over `path`; on any failure `path` is left as it was.

    Raises
    ------
        ExportError: the checkpoint cannot be loaded, exported, or verified.

    """
    start = time.perf_counter()
    if isinstance(run_dir_or_checkpoint, PolicyBundle):
        bundle = run_dir_or_checkpoint
    else:
        try:
            bundle = load_policy(run_dir_or_checkpoint)
        except CheckpointError as exc:
            raise ExportError(str(exc)) from None
    path = Path(path)
    worst: list[float] = []
    atomic_write_bytes(path, build_onnx(bundle),
                       check=lambda tmp: worst.append(verify(bundle, tmp, n=n_verify)))
    log.info('exported %s (max |onnx - torch| = %.2g, %.1f s)', path, worst[0],
             time.perf_counter() - start)
    return path
