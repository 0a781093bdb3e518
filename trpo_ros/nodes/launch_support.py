"""
What train.launch.py and train_node need before a node exists: parameters, env, URDF.

`NODE_PARAMETERS` and the TRPOConfig fields are train_node's parameters; `resolve_env` turns
the `env` parameter (an env id or a robot/task YAML path) into an env id and kwargs;
`launch_robot_description` gives robot_state_publisher the training env's URDF (rooted at
`world`, the same text train_node publishes on /robot_description).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from trpo_ros.core.config import field_docs, FIELDS, TRPOConfig
from trpo_ros.errors import ParameterError
from trpo_ros.nodes.conversions import robot_description_in_world

REACH_ENV_ID = 'trpo_ros/Reach-v0'

NODE_PARAMETERS: dict[str, tuple[Any, str]] = {
    'env': ('', "env id or a robot/task YAML path (YAML -> 'trpo_ros/Reach-v0' with "
                'env_kwargs robot_yaml); empty = env_id'),
    'run_dir': ('', 'run directory (empty = runs/<env>_<time>); must not hold a run'),
    'resume': ('', 'run directory to resume from its last good checkpoint (empty = new run); '
                   'only total_steps may change'),
    'config_file': ('', 'YAML file of TRPOConfig fields (parameters set on the node override '
                        'it)'),
    'preview_rate_hz': (-1.0, 'live preview control rate for rviz2 (< 0 = the env control '
                              'rate, i.e. real time; 0 = off; arm envs only)'),
    'camera_rate_hz': (0.0, 'rate of sensor_msgs/Image frames on /trpo/camera from the preview '
                            "env's rgb_array renderer (0 = off)"),
    'frame_id': ('world', 'fixed frame of the markers (the published URDF is rooted there)'),
    'exit_when_done': (False, 'exit (code 0) after the final export instead of serving on'),
    'tensorboard': (True, 'also write TensorBoard events to run_dir/tensorboard'),
}
"""Node parameters that are not TRPOConfig fields: name -> (default, description)."""


def config_parameter_descriptions() -> dict[str, str]:
    """Describe each TRPOConfig field parameter (field docstring, type, default)."""
    docs, defaults, out = field_docs(), TRPOConfig(), {}
    for name in FIELDS:
        value = getattr(defaults, name)
        if isinstance(value, bool):
            kind = 'bool'
        elif isinstance(value, tuple):
            kind, value = 'integer array', list(value)
        elif isinstance(value, dict):
            kind, value = 'YAML string', '{}'
        else:
            kind = type(value).__name__
        out[name] = f'{docs.get(name, name)} [{kind}; default {value!r}; unset = config_file]'
    return out


def declared_parameters() -> list[str]:
    """Every parameter train_node declares (node parameters, then TRPOConfig fields)."""
    return [*NODE_PARAMETERS, *FIELDS]


def robot_description_for_env(env: str, env_kwargs: dict[str, Any] | None = None,
                              frame_id: str = 'world') -> str:
    """
    URDF (rooted at `frame_id`) of an env id or robot YAML; '' for envs without spec_info.

    Used by launch/train.launch.py to give robot_state_publisher its `robot_description`.
    """
    from trpo_ros.core.rollout import env_info, make_env

    env_id, kwargs = resolve_env(env, 'trpo_ros/KukaReach-v0', env_kwargs or {})
    made = make_env(env_id, kwargs)
    try:
        info = env_info(made)
    finally:
        made.close()
    return robot_description_in_world(info, frame_id) if info else ''


def launch_robot_description(env: str = '', resume: str = '', frame_id: str = 'world') -> str:
    """
    URDF for robot_state_publisher in train.launch.py: the env of `resume`'s run, else `env`.

    Launch values `''` / `""` (YAML empty strings) count as empty; the default env is
    trpo_ros/KukaReach-v0. Returns '' for envs without spec_info.
    """
    import json

    env, resume = (_unquote(v) for v in (env, resume))
    if resume:
        saved = json.loads((Path(resume) / 'config.json').read_text())
        return robot_description_for_env(saved['env_id'], saved.get('env_kwargs'), frame_id)
    return robot_description_for_env(env, None, frame_id)


def _unquote(value: str) -> str:
    value = str(value).strip()
    return '' if value in ("''", '""') else value


def resolve_env(env: str, env_id: str, env_kwargs: dict[str, Any]) -> tuple[str, dict]:
    """(env_id, env_kwargs) for the `env` parameter: an env id or a robot YAML path."""
    env = env.strip()
    if not env:
        return env_id, dict(env_kwargs)
    if env.endswith(('.yaml', '.yml')) or os.path.isfile(env):
        if not os.path.isfile(env):
            raise ParameterError(f'env: robot YAML file not found: {env}')
        return REACH_ENV_ID, {**env_kwargs, 'robot_yaml': str(Path(env).resolve())}
    return env, dict(env_kwargs)
