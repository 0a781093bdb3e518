"""Checkpoints: atomic writes, safe loads (`weights_only=True`), and the policy bundle."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
import json
import os
from pathlib import Path
import re
import tempfile
from typing import Any

import numpy as np
import torch
from trpo_ros.core.config import from_dict, TRPOConfig
from trpo_ros.core.policy import PolicyModel
from trpo_ros.errors import UserError

CHECKPOINT_FORMAT = 1
_NAME = re.compile(r'ckpt_(\d{6})\.pt$')


class CheckpointError(UserError):
    """A run directory or checkpoint that cannot be loaded; the message says why."""


def atomic_write_bytes(path: str | Path, data: bytes,
                       check: Callable[[Path], object] | None = None) -> None:
    """
    Write `data` to `path` so that a reader sees the old file or the new one, never half.

    `check(temporary_path)` runs on the complete temporary file before the rename; if it
    raises, `path` is left untouched and the exception propagates.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.', suffix='.tmp')
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes 0600; a model must be readable by the robot user
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if check is not None:
            check(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(state: dict[str, Any], checkpoint_dir: str | Path, iteration: int,
                    keep: int = 3, name: str | None = None) -> Path:
    """Write `ckpt_<iteration>.pt` (or `name`) atomically; keep the newest `keep` ckpt files."""
    import io

    buffer = io.BytesIO()
    torch.save({'format': CHECKPOINT_FORMAT, **state}, buffer)
    path = Path(checkpoint_dir) / (name or f'ckpt_{iteration:06d}.pt')
    atomic_write_bytes(path, buffer.getvalue())
    for old in list_checkpoints(checkpoint_dir)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def list_checkpoints(checkpoint_dir: str | Path) -> list[Path]:
    """Checkpoint files in a directory, oldest first."""
    folder = Path(checkpoint_dir)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if _NAME.search(p.name))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load one checkpoint file with `weights_only=True`."""
    path = Path(path)
    try:
        state = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
        raise CheckpointError(f'cannot read checkpoint {path}: {exc.__class__.__name__}') from None
    if not isinstance(state, dict) or state.get('format') != CHECKPOINT_FORMAT:
        raise CheckpointError(f'{path} is not a trpo_ros checkpoint')
    return state


def resolve_checkpoint(run_dir_or_checkpoint: str | Path) -> Path:
    """Newest checkpoint file of a run directory (or the file itself)."""
    path = Path(run_dir_or_checkpoint)
    if path.is_file():
        return path
    if not path.exists():
        raise CheckpointError(f'no such run directory or checkpoint: {path}')
    found = list_checkpoints(path / 'checkpoints')
    if not found:
        raise CheckpointError(f'{path} is not a trpo_ros run (no checkpoints/ckpt_*.pt)')
    return found[-1]


def load_latest_good(run_dir: str | Path) -> tuple[Path, dict[str, Any]]:
    """Newest checkpoint of a run that loads; older ones are the fallback after a crash."""
    candidates = list_checkpoints(Path(run_dir) / 'checkpoints')
    if not candidates:
        raise CheckpointError(f'{run_dir} is not a trpo_ros run (no checkpoints/ckpt_*.pt)')
    errors = []
    for path in reversed(candidates):
        try:
            return path, load_checkpoint(path)
        except CheckpointError as exc:
            errors.append(str(exc))
    raise CheckpointError('; '.join(errors))


def resume_config(run_dir: str | Path, overrides: Mapping[str, Any]) -> TRPOConfig:
    """
    Return the saved config of the run to resume, with `overrides` applied.

    The one rule for resuming (CLI and train_node): a resumed run is the same experiment,
    continued, so a field other than total_steps that differs from the saved value is refused
    (CheckpointError naming it); equal values are fine.
    """
    _, state = load_latest_good(run_dir)
    saved = from_dict(state['config'])
    changed = [f'{name} ({getattr(saved, name)!r} -> {value!r})'
               for name, value in overrides.items()
               if name != 'total_steps' and value != getattr(saved, name)]
    if changed:
        raise CheckpointError(f'only total_steps can change when resuming {run_dir}; '
                              f'changed: {", ".join(changed)}')
    if 'total_steps' in overrides:
        saved = saved.replace(total_steps=overrides['total_steps'])
    return saved


@dataclass
class PolicyBundle:
    """What acting needs: the policy (normalizer -> actor -> scaler) and the env description."""

    config: TRPOConfig
    policy: PolicyModel
    env_info: dict[str, Any]
    iteration: int
    env_steps: int

    def act(self, obs: np.ndarray) -> np.ndarray:
        """Deterministic env action(s) for observation(s), as in evaluation."""
        return self.policy.act(obs)


def load_policy(run_dir_or_checkpoint: str | Path) -> PolicyBundle:
    """Load the acting part of a run's newest checkpoint (or of a given checkpoint file)."""
    path = resolve_checkpoint(run_dir_or_checkpoint)
    state = load_checkpoint(path)
    config = from_dict(state['config'])
    low, high = np.array(state['action_low']), np.array(state['action_high'])
    policy = PolicyModel.build(config, int(state['obs_dim']), low, high)
    policy.normalizer.load_state_dict(state['normalizer'])
    policy.actor.load_state_dict(state['actor'])
    policy.eval()
    return PolicyBundle(config, policy, json.loads(state['env_info']), int(state['iteration']),
                        int(state['env_steps']))
