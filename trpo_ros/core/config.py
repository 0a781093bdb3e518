"""TRPO hyperparameters: one frozen dataclass, loadable from YAML, overridable from the CLI."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
import json
from pathlib import Path
from typing import Any

from trpo_ros.errors import UserError
from trpo_ros.robot.config import read_yaml_mapping
import yaml


class ConfigError(UserError):
    """A configuration value or file that cannot be used; the message names the problem."""


@dataclass(frozen=True)
class TRPOConfig:
    """Everything that decides a training run. Field docstrings are the documentation."""

    env_id: str = 'trpo_ros/KukaReach-v0'
    """Gymnasium id of the environment (any env with a Box action space)."""
    env_kwargs: dict = field(default_factory=dict)
    """Keyword arguments passed to `gymnasium.make` (e.g. `urdf`, `control_mode`)."""
    seed: int = 0
    """Seed for torch, numpy and the environments."""
    total_steps: int = 300_000
    """Environment steps to train for (all envs together)."""
    n_envs: int = 1
    """Parallel environments; more than one runs them in subprocesses (AsyncVectorEnv)."""
    n_steps: int = 2048
    """Steps collected per environment per iteration (batch = n_envs * n_steps)."""
    rollout_backend: str = 'local'
    """'local' (this machine: in-process or subprocess envs) or 'ray' (Ray actors)."""
    ray_address: str = ''
    """Ray cluster to join ('auto', 'HOST:PORT'); empty starts a local Ray instance."""
    num_workers: int = 2
    """Ray backend: rollout worker actors."""
    envs_per_worker: int = 1
    """Ray backend: environments stepped by each worker."""
    gamma: float = 0.99
    """Discount factor."""
    gae_lambda: float = 0.95
    """GAE(lambda) trace parameter."""
    hidden_sizes: tuple[int, ...] = (64, 64)
    """Hidden layer widths of the actor and of the critic MLPs."""
    init_log_std: float = -0.5
    """Initial log standard deviation of the Gaussian policy (in normalized action units)."""
    normalize_obs: bool = True
    """Normalize observations by running mean/variance, updated every step (frozen on export)."""
    obs_clip: float = 10.0
    """Normalized observations are clipped to [-obs_clip, obs_clip]."""
    normalize_rewards: bool = True
    """Scale rewards by the running std of the discounted return (metrics stay unscaled)."""
    reward_clip: float = 10.0
    """Scaled rewards are clipped to [-reward_clip, reward_clip]."""
    normalize_advantages: bool = True
    """Standardize advantages within each batch."""
    delta: float = 0.01
    """Initial trust-region radius: maximum mean KL(pi_old || pi_new) per update."""
    trust_region: str = 'adaptive'
    """'fixed' keeps delta constant; 'adaptive' adapts it from actual vs predicted gain."""
    delta_min: float = 1e-4
    """Floor of the adaptive trust region."""
    delta_max: float = 0.02
    """Ceiling of the adaptive trust region (conservative: twice the initial delta)."""
    delta_shrink: float = 0.5
    """Factor applied to delta when it shrinks."""
    delta_expand: float = 1.5
    """Factor applied to delta when it expands."""
    ratio_shrink_below: float = 0.25
    """Shrink delta when actual / predicted surrogate gain falls below this."""
    ratio_expand_above: float = 0.75
    """Expand delta when the ratio exceeds this and the full step was accepted."""
    cg_iters: int = 10
    """Conjugate-gradient iterations for the natural gradient H^-1 g."""
    cg_damping: float = 0.1
    """Damping added to the Fisher-vector product (F + damping * I)."""
    fisher_subsample: float = 1.0
    """Fraction of the batch used for Fisher-vector products (1.0 = all of it)."""
    line_search_steps: int = 10
    """Maximum backtracking steps of the line search."""
    line_search_decay: float = 0.5
    """Step fraction multiplier per backtracking step."""
    critic_lr: float = 1e-3
    """Adam learning rate of the critic."""
    n_critic_epochs: int = 10
    """Passes over the batch when fitting the critic."""
    critic_batch_size: int = 128
    """Minibatch size for critic fitting."""
    rollback_on_regression: bool = False
    """Restore the previous policy (and shrink delta) when the return falls too much."""
    regression_tolerance: float = 0.2
    """Allowed fall of the mean episodic return, as a fraction of its magnitude (min 1.0)."""
    checkpoint_every: int = 25
    """Write a checkpoint (and policy.onnx) every this many iterations."""
    eval_every: int = 10
    """Evaluate deterministically every this many iterations (0 = never during training)."""
    eval_episodes: int = 10
    """Episodes per evaluation."""
    torch_threads: int = 1
    """torch intra-op threads (small MLPs are fastest on one thread)."""

    def __post_init__(self) -> None:
        """Reject values that cannot make a working run, naming the field."""
        positive = ('delta', 'delta_min', 'delta_max', 'total_steps', 'n_envs', 'n_steps',
                    'cg_iters', 'line_search_steps', 'critic_lr', 'critic_batch_size',
                    'obs_clip', 'reward_clip', 'eval_episodes', 'torch_threads',
                    'checkpoint_every')
        for name in positive:
            if not getattr(self, name) > 0:
                raise ConfigError(f'{name} must be > 0, got {getattr(self, name)!r}')
        if self.rollout_backend not in ('local', 'ray'):
            raise ConfigError(f"rollout_backend must be 'local' or 'ray', "
                              f'got {self.rollout_backend!r}')
        if self.num_workers <= 0 or self.envs_per_worker <= 0:
            raise ConfigError('num_workers and envs_per_worker must be > 0')
        if self.trust_region not in ('fixed', 'adaptive'):
            raise ConfigError(f"trust_region must be 'fixed' or 'adaptive', "
                              f'got {self.trust_region!r}')
        if not self.delta_min <= self.delta <= self.delta_max:
            raise ConfigError(f'need delta_min <= delta <= delta_max, got '
                              f'{self.delta_min} <= {self.delta} <= {self.delta_max}')
        if not 0 < self.delta_shrink < 1 or not self.delta_expand >= 1:
            raise ConfigError('need 0 < delta_shrink < 1 and delta_expand >= 1')
        if not 0 < self.line_search_decay < 1:
            raise ConfigError('line_search_decay must be in (0, 1)')
        if not 0 < self.fisher_subsample <= 1:
            raise ConfigError('fisher_subsample must be in (0, 1]')
        for name in ('gamma', 'gae_lambda'):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f'{name} must be in [0, 1]')
        if self.cg_damping < 0 or self.n_critic_epochs < 0 or self.eval_every < 0:
            raise ConfigError('cg_damping, n_critic_epochs and eval_every must be >= 0')
        if not self.hidden_sizes or any(h <= 0 for h in self.hidden_sizes):
            raise ConfigError(f'hidden_sizes must be positive widths, got {self.hidden_sizes}')

    @property
    def total_envs(self) -> int:
        """Environments stepped in parallel by the chosen rollout backend."""
        if self.rollout_backend == 'ray':
            return self.num_workers * self.envs_per_worker
        return self.n_envs

    @property
    def batch_size(self) -> int:
        """Environment steps per iteration."""
        return self.total_envs * self.n_steps

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def replace(self, **changes: Any) -> TRPOConfig:
        """Copy with some fields changed (validated like a new config)."""
        return from_dict({**self.to_dict(), **changes})


FIELDS = {f.name: f for f in fields(TRPOConfig)}


def field_docs() -> dict[str, str]:
    """Docstring of each config field, read from the source (used for CLI help and ROS params)."""
    import ast
    import inspect
    import textwrap

    tree = ast.parse(textwrap.dedent(inspect.getsource(TRPOConfig)))
    body = tree.body[0].body
    docs: dict[str, str] = {}
    for node, following in zip(body, body[1:]):
        if (isinstance(node, ast.AnnAssign) and isinstance(following, ast.Expr)
                and isinstance(following.value, ast.Constant)):
            docs[node.target.id] = str(following.value.value).strip()
    return docs


def coerce(name: str, value: Any) -> Any:
    """Convert a YAML/CLI/ROS value to the type of field `name`, or raise ConfigError."""
    if name not in FIELDS:
        raise ConfigError(f'unknown config field {name!r}')
    default = _default(name)
    try:
        if isinstance(default, bool):
            if isinstance(value, str):
                if value.lower() not in ('true', 'false', '1', '0', 'yes', 'no'):
                    raise ValueError(value)
                return value.lower() in ('true', '1', 'yes')
            return bool(value)
        if isinstance(default, int):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(float(value)) if isinstance(value, str) else int(value)
        if isinstance(default, float):
            return float(value)
        if isinstance(default, tuple):
            if isinstance(value, str):
                value = [v for v in value.replace(',', ' ').split() if v]
            return tuple(int(v) for v in value)
        if isinstance(default, dict):
            if isinstance(value, str):
                value = yaml.safe_load(value) or {}
            if not isinstance(value, dict):
                raise ValueError(value)
            return dict(value)
        return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f'bad value for {name}: {value!r} '
                          f'(expected {type(default).__name__})') from None


def _default(name: str) -> Any:
    f = FIELDS[name]
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


def from_dict(values: dict[str, Any]) -> TRPOConfig:
    """Build a validated config from a plain dict (unknown keys are an error)."""
    return TRPOConfig(**{k: coerce(k, v) for k, v in values.items()})


def load_config(path: str | Path | None = None, **overrides: Any) -> TRPOConfig:
    """Load a YAML file (optional) and apply overrides whose value is not None."""
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f'config file not found: {path}')
        values.update(read_yaml_mapping(path, 'config file', ConfigError))
    values.update({k: v for k, v in overrides.items() if v is not None})
    return from_dict(values)
