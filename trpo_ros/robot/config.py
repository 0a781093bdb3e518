"""
Robot/task YAML files under `sim/`: locating, loading and validating them.

A robot/task YAML (see `sim/kuka_reach.yaml`) has two sections::

    robot:                       # what is being simulated
      urdf: kuka_iiwa/model.urdf # path (relative to the YAML), pybullet_data name or URDF
      joints: null               # controlled joints; null = every revolute/prismatic joint
      ee_link: lbr_iiwa_link_7   # end-effector link (its URDF frame is tracked)
      base_position: [0, 0, 0]
      base_orientation: [0, 0, 0, 1]
      home: [...]                # reset configuration, one value per controlled joint
      limits: {}                 # per-joint overrides {joint: {lower, upper, velocity, effort}}
    task:                        # the task (trpo_ros/robot/reach_task.py, push_task.py)
      type: reach                # reach (default) | push (adds table_height, object_*)
      control_mode: position_delta
      max_delta: 0.05            # rad (or m) per control step, position_delta only
      control_rate_hz: 50
      physics_rate_hz: 240
      episode_steps: 250         # 5 s
      success_threshold: 0.05
      goal_low: [x, y, z]        # goal region box, world frame (m); push: [x, y] on the table
      goal_high: [x, y, z]
      init_joint_noise: 0.1      # uniform noise (rad) around `home` at reset
"""

from __future__ import annotations

from collections.abc import Mapping
import copy
import os
from pathlib import Path
import sys
from typing import Any

from trpo_ros.errors import UserError
import yaml

PACKAGE = 'trpo_ros'
CONTROL_MODES = ('position', 'position_delta', 'velocity', 'torque')

ROBOT_KEYS = ('urdf', 'joints', 'ee_link', 'base_position', 'base_orientation', 'home', 'limits')
LIMIT_KEYS = ('lower', 'upper', 'velocity', 'effort')


class RobotConfigError(UserError):
    """A robot/task description is unusable (missing file, unknown link/joint/mode, ...)."""


def sim_dirs() -> list[Path]:
    """Folders searched for sim files: repo-root `sim/`, then installed `share/trpo_ros/sim`."""
    here = Path(__file__).resolve()
    dirs = [here.parents[2] / 'sim',  # source checkout
            Path(sys.prefix) / 'share' / PACKAGE / 'sim']  # pip install into a venv
    if len(here.parents) > 5:  # colcon: <prefix>/lib/pythonX.Y/site-packages/trpo_ros/sim/
        dirs.append(here.parents[5] / 'share' / PACKAGE / 'sim')
    for prefix in os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep):
        if prefix:
            dirs.append(Path(prefix) / 'share' / PACKAGE / 'sim')
    return dirs


def find_sim_file(name: str | os.PathLike) -> Path:
    """
    Return the path of a sim file given as a path or a bare name like 'kuka_reach.yaml'.

    Raises
    ------
        RobotConfigError: the file exists in none of the searched places (they are listed).

    """
    path = Path(name).expanduser()
    if path.is_file():
        return path.resolve()
    tried = [str(path)]
    if not path.is_absolute():
        for folder in sim_dirs():
            candidate = folder / path
            if candidate.is_file():
                return candidate.resolve()
            tried.append(str(candidate))
    raise RobotConfigError(f'sim file {str(name)!r} not found (looked at: {", ".join(tried)})')


def read_yaml_mapping(path: Path, what: str, error: type[UserError]) -> dict[str, Any]:
    """Read a YAML file that must hold a mapping; `error` names `what` and `path` otherwise."""
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise error(f'{what} {path} is not valid YAML: {exc}') from None
    if not isinstance(data, dict):
        raise error(f'{what} {path} must hold a mapping at the top level')
    return data


def load_robot_yaml(name: str | os.PathLike | Mapping[str, Any]) -> dict[str, Any]:
    """
    Load and validate a robot/task YAML; returns {'path', 'robot': {...}, 'task': {...}}.

    `name` is a file (path or name under `sim/`) or the mapping itself (e.g. the
    `robot_config` an exported model carries; its path is '<embedded>'). A relative
    `robot.urdf` that exists next to the YAML file is made absolute.
    """
    if isinstance(name, Mapping):
        path, data = Path('<embedded>'), copy.deepcopy(dict(name))
    else:
        path = find_sim_file(name)
        data = read_yaml_mapping(path, 'robot/task YAML', RobotConfigError)
    robot = data.get('robot') or {}
    task = data.get('task') or {}
    for section, values in (('robot', robot), ('task', task)):
        if not isinstance(values, dict):
            raise RobotConfigError(f'{path}: `{section}` must be a mapping')
    unknown = sorted(set(robot) - set(ROBOT_KEYS))
    if unknown:
        raise RobotConfigError(f'{path}: unknown robot keys {unknown} (allowed: {ROBOT_KEYS})')
    # The task's keys depend on its type: the task module checks them (task.merged_task).
    if 'urdf' not in robot:
        raise RobotConfigError(f'{path}: robot.urdf is required')
    urdf = str(robot['urdf'])
    if '<robot' not in urdf and not Path(urdf).is_absolute() and (path.parent / urdf).is_file():
        robot['urdf'] = str((path.parent / urdf).resolve())
    mode = task.get('control_mode')
    if mode is not None and mode not in CONTROL_MODES:
        raise RobotConfigError(f'{path}: unknown control_mode {mode!r} '
                               f'(choose from {CONTROL_MODES})')
    return {'path': str(path), 'robot': robot, 'task': task}
