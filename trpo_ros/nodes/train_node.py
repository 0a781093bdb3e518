"""
TRPO training as a ROS 2 node: a thin adapter over :class:`trpo_ros.core.trainer.Trainer`.

The trainer runs in a background thread (:class:`trpo_ros.core.controller.TrainingController`,
ROS-free); the executor stays free for services, the live preview and shutdown. Every
iteration publishes each finite scalar metric as ``std_msgs/Float64`` on ``/trpo/<name>``
(see :data:`METRIC_TOPICS`) and all of them in one ``diagnostic_msgs/DiagnosticArray`` on
``/diagnostics``. For arm envs (those with ``spec_info``) one extra in-process env is driven
by a copy of the current policy at real time and published for rviz2
(:class:`trpo_ros.nodes.preview.PolicyPreview`): ``/joint_states``, ``/robot_description`` and
``/trpo/markers`` (optionally ``/trpo/camera``). When the budget is spent the node saves,
exports ``policy.onnx`` and publishes its path on ``/trpo/policy_path`` (transient local).

Services: ``~/save_checkpoint``, ``~/export_policy`` (std_srvs/Trigger, the reply message is the
path) and ``~/pause`` (std_srvs/SetBool). They run between two iterations (a lock the training
thread holds during an iteration), so a checkpoint never mixes two iterations.

SIGINT/SIGTERM: the trainer's ``stop_event`` is set; the node waits at most
:data:`STOP_GRACE` seconds for the running iteration, then exits with code 0. Checkpoints are
written atomically, so the newest checkpoint on disk is always a whole one.
"""

from __future__ import annotations

from collections.abc import Sequence
import math
import os
from pathlib import Path
import sys
import time
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node
from std_msgs.msg import Float64, String
from std_srvs.srv import SetBool, Trigger
from trpo_ros.core.config import FIELDS, TRPOConfig
from trpo_ros.core.controller import TrainingController
from trpo_ros.core.metrics import METRICS
from trpo_ros.errors import ParameterError
from trpo_ros.nodes.conversions import (
    diagnostic_array,
    diagnostic_status,
    ERROR,
    latched_qos,
    OK,
    WARN,
)
from trpo_ros.nodes.guard import Guard, SafeLog
from trpo_ros.nodes.launch_support import (
    config_parameter_descriptions,
    NODE_PARAMETERS,
    resolve_env,
)
from trpo_ros.nodes.preview import PolicyPreview
from trpo_ros.nodes.runner import run_nodes, StopFlag

NODE_NAME = 'train_node'
STATUS_NAME = 'trpo_ros: training'
STOP_GRACE = 0.5
"""Seconds after SIGINT/SIGTERM the node waits for a running iteration before it exits."""


class _StopFlag(StopFlag):
    """
    A StopFlag that remembers when it was set and tells the trainer at once.

    The time starts the STOP_GRACE wait; the callback stops the running iteration right away.
    """

    def __init__(self) -> None:
        super().__init__()
        self.time: float | None = None
        self.on_set: list[Any] = []

    def set(self, reason: str = 'stop') -> None:  # noqa: A003 - StopFlag API
        """Record the time, run the callbacks (e.g. set trainer.stop_event), then stop."""
        if self.time is None:
            self.time = time.monotonic()
            for callback in self.on_set:
                callback()
        super().set(reason)


def metric_topic_name(key: str) -> str:
    """
    Topic name (under /trpo/) of a metric key: the key without its namespace.

    `eval/*` keys keep an `eval_` prefix (`eval/success_rate` -> `eval_success_rate`) because
    `rollout/success_rate` is `success_rate`.
    """
    namespace, _, name = key.rpartition('/')
    return f'eval_{name}' if namespace == 'eval' else name


METRIC_TOPICS: dict[str, str] = {key: f'/trpo/{metric_topic_name(key)}' for key in METRICS}
"""Metric key -> Float64 topic, e.g. 'train/kl' -> '/trpo/kl'."""
assert len(set(METRIC_TOPICS.values())) == len(METRIC_TOPICS), 'metric topics must be unique'


class TrainNode(Node):
    """Runs one TRPO training run (see the module docstring and README for the interface)."""

    def __init__(self, *, stop: StopFlag | None = None, start: bool = True,
                 **kwargs: Any) -> None:
        """
        Declare parameters, build the trainer (and preview env); `start` starts training.

        Raises
        ------
            ParameterError, ConfigError, CheckpointError, RobotConfigError: bad parameter values.

        """
        self._closed = True  # until the trainer exists (rclpy may destroy a half-built node)
        self._preview: PolicyPreview | None = None
        super().__init__(NODE_NAME, **kwargs)
        self.log = SafeLog(self.get_logger())
        self.guard = Guard(self.log)
        self._stop = stop
        for name, (default, text) in NODE_PARAMETERS.items():
            dynamic = isinstance(default, float)  # accept 50 as well as 50.0
            self.declare_parameter(name, default, ParameterDescriptor(
                description=text, read_only=True, dynamic_typing=dynamic))
        for name, text in config_parameter_descriptions().items():
            self.declare_parameter(name, None, ParameterDescriptor(
                description=text, read_only=True, dynamic_typing=True))
        param = {name: self.get_parameter(name).value for name in NODE_PARAMETERS}
        self.frame_id = str(param['frame_id']) or 'world'
        preview_rate = _rate(param, 'preview_rate_hz')
        camera_rate = _rate(param, 'camera_rate_hz')

        from trpo_ros.core.trainer import Trainer
        from trpo_ros.export import export_onnx

        config, run_dir, resume = self._build_config(param)
        self.trainer = Trainer(config, run_dir, resume=resume,
                               tensorboard=bool(param['tensorboard']), exporter=export_onnx)
        self.controller = TrainingController(
            self.trainer, self.guard.wrap('metrics', self._after_iteration), self._on_end)
        try:
            self._setup(param, preview_rate, camera_rate)
        except BaseException:
            if self._preview is not None:
                self._preview.close()
            self.trainer.close()
            raise
        self._closed = False
        if isinstance(stop, _StopFlag):
            stop.on_set.append(self.trainer.stop_event.set)
        if start:
            self.start()

    # ---------------------------------------------------------------------------- set-up
    def _build_config(self, param: dict[str, Any]) -> tuple[TRPOConfig, Path, bool]:
        """Config: dataclass defaults < config_file < parameters set on the node."""
        from trpo_ros.core.config import coerce, load_config

        given = {}
        for name in FIELDS:
            value = self.get_parameter(name).value
            if value is not None and value != '':
                given[name] = coerce(name, value)
        if param['resume']:
            from trpo_ros.core.checkpoint import resume_config

            clash = [n for n in ('env', 'config_file', 'run_dir') if param[n]]
            if clash:
                raise ParameterError(f'resume cannot be combined with {", ".join(clash)}')
            run_dir = Path(str(param['resume']))
            return resume_config(run_dir, given), run_dir, True
        config = load_config(param['config_file'] or None, **given)
        env_id, env_kwargs = resolve_env(str(param['env']), config.env_id, config.env_kwargs)
        if (env_id, env_kwargs) != (config.env_id, config.env_kwargs):
            config = config.replace(env_id=env_id, env_kwargs=env_kwargs)
        from trpo_ros.core.trainer import default_run_dir

        run_dir = Path(str(param['run_dir']) or default_run_dir(config.env_id))
        return config, run_dir, False

    def _setup(self, param: dict[str, Any], preview_rate: float, camera_rate: float) -> None:
        trainer = self.trainer
        self.run_dir = trainer.run_dir
        self._last_row: dict[str, float] = {}
        self.policy_path = ''

        self._metric_pubs = {key: self.create_publisher(Float64, topic, 10)
                             for key, topic in METRIC_TOPICS.items()}
        self._diag_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self._path_pub = self.create_publisher(String, '/trpo/policy_path', latched_qos())
        services, guard = ReentrantCallbackGroup(), self.guard
        self.create_service(Trigger, '~/save_checkpoint', guard.service('save', self._on_save),
                            callback_group=services)
        self.create_service(Trigger, '~/export_policy', guard.service('export', self._on_export),
                            callback_group=services)
        self.create_service(SetBool, '~/pause', guard.service('pause', self._on_pause),
                            callback_group=services)

        info, config = trainer.env_info, trainer.config
        if info and preview_rate != 0:
            self._preview = PolicyPreview(
                self, config.env_id, config.env_kwargs, info, self._policy_copy().act,
                seed=config.seed, rate_hz=preview_rate, camera_rate_hz=camera_rate,
                frame_id=self.frame_id)
        elif not info:
            self.log.info(f'{trainer.config.env_id} has no spec_info: no preview')
        self.log.info(
            f'{"resuming" if trainer.iteration else "training"} {trainer.config.env_id} in '
            f'{self.run_dir} ({trainer.env_steps}/{trainer.config.total_steps} steps, '
            f'batch {trainer.config.batch_size})')

    # ------------------------------------------------------------------------- training
    def start(self) -> None:
        """Start the training thread."""
        self.controller.start()

    @property
    def training(self) -> bool:
        """Tell whether the training thread runs."""
        return self.controller.running

    def _after_iteration(self, row: dict[str, float]) -> None:
        """Training thread, under the lock: refresh the preview, publish the metrics."""
        if self._preview is not None:
            self._preview.set_policy(self._policy_copy().act)
        self._publish_metrics(row)

    def _on_end(self, state: str, error: BaseException | None) -> None:
        """Training thread, at its end: report; `exit_when_done` stops the node."""
        if state == 'failed':
            self.log.error(f'training failed: {type(error).__name__}: {error}')
            self._publish_diagnostics(level_override=(ERROR, f'training failed: {error}'))
            if self._stop is not None and self.get_parameter('exit_when_done').value:
                self._stop.set('failed')
        elif state == 'done':
            self._finish()

    def _finish(self) -> None:
        trainer = self.trainer
        path = self.run_dir / 'policy.onnx'
        if path.is_file() and trainer.last_export_error is None:
            self.policy_path = str(path.resolve())
            self._path_pub.publish(String(data=self.policy_path))
            self.log.info(f'done: {trainer.env_steps} steps, {trainer.iteration} '
                          f'iterations; policy {self.policy_path}')
        else:
            self.log.error(f'done, but the ONNX export failed: {trainer.last_export_error}')
        self._publish_diagnostics()
        if self.get_parameter('exit_when_done').value and self._stop is not None:
            self._stop.set('done')

    def _policy_copy(self) -> Any:
        return self.controller.policy_copy()

    # -------------------------------------------------------------------------- metrics
    def _publish_metrics(self, row: dict[str, float]) -> None:
        self._last_row = row
        for key, value in row.items():
            if math.isfinite(value):
                self._metric_pubs[key].publish(Float64(data=float(value)))
        self._publish_diagnostics()

    def _publish_diagnostics(self, level_override: tuple[int, str] | None = None) -> None:
        row, config = self._last_row, self.trainer.config
        level, message = OK, self.controller.state
        if row:
            message = (f"{self.controller.state}: iteration {int(row['iteration'])}, "
                       f"{int(row['env_steps'])}/{config.total_steps} steps, "
                       f"return {row['rollout/ep_return_mean']:.3g}")
            if row.get('train/step_accepted') == 0.0:
                level, message = WARN, message + '; line search rejected the step'
            elif row.get('train/delta_next', math.inf) <= config.delta_min:
                level, message = WARN, message + '; trust region at its floor delta_min'
        if level_override is not None:
            level, message = level_override
        contained = self.guard.take_recent()
        if contained and level_override is None:
            level, message = ERROR, message + '; contained ' + '; '.join(contained.values())
        values: dict[str, Any] = {'state': self.controller.state, 'env_id': config.env_id,
                                  'run_dir': str(self.run_dir), **row,
                                  'callback_errors': self.guard.errors}
        if self.policy_path:
            values['policy_path'] = self.policy_path
        status = diagnostic_status(STATUS_NAME, self.get_fully_qualified_name(), level,
                                   message, values)
        self._diag_pub.publish(diagnostic_array(self.get_clock().now().to_msg(), [status]))

    # ------------------------------------------------------------------------- services
    def _on_save(self, request: Trigger.Request, response: Trigger.Response) -> Any:
        return self._trigger(response, self.controller.save, 'checkpoint')

    def _on_export(self, request: Trigger.Request, response: Trigger.Response) -> Any:
        return self._trigger(response, self.controller.export, 'ONNX export')

    def _trigger(self, response: Trigger.Response, work: Any, what: str) -> Any:
        try:
            path = work()
            response.success, response.message = True, str(Path(path).resolve())
            self.log.info(f'{what}: {response.message}')
        except Exception as exc:  # noqa: BLE001 - the caller gets the reason
            response.success, response.message = False, f'{what} failed: {exc}'
            self.log.error(response.message)
        return response

    def _on_pause(self, request: SetBool.Request, response: SetBool.Response) -> Any:
        response.message = self.controller.pause(bool(request.data))
        response.success = True
        self.log.info(response.message)
        return response

    # ------------------------------------------------------------------------- shutdown
    def stop_training(self, timeout: float | None = None) -> bool:
        """
        Ask the trainer to stop after this iteration; True if the thread ended in time.

        The default wait ends STOP_GRACE seconds after the stop signal (or from now).
        """
        if timeout is None:
            since = getattr(self._stop, 'time', None) or time.monotonic()
            timeout = max(0.0, since + STOP_GRACE - time.monotonic())
        if self._preview is not None:
            self._preview.stop()
        return self.controller.stop(timeout)

    def destroy_node(self) -> None:
        """Stop training (bounded wait), release the envs, then destroy the node."""
        if not self._closed:
            self._closed = True
            finished = self.stop_training()
            if self._preview is not None:
                self._preview.close()
            if finished:  # else the thread still uses them; the process exits anyway
                self.trainer.close()
            else:
                newest = getattr(self.trainer, 'checkpoint_path', None)
                self.log.warning(f'iteration or final export still running after {STOP_GRACE}'
                                 f' s; exiting without it (newest checkpoint: {newest}; '
                                 '`trpo-ros export RUN_DIR` exports it)')
        super().destroy_node()


def _rate(param: dict[str, Any], name: str) -> float:
    value = param[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(
            float(value)):
        raise ParameterError(f'parameter {name} must be a number, got {value!r}')
    if name == 'camera_rate_hz' and value < 0:
        raise ParameterError(f'parameter {name} must be >= 0, got {value!r}')
    return float(value)


def main(args: Sequence[str] | None = None) -> int:
    """
    Entry point: `train_node --ros-args -p env:=trpo_ros/KukaReach-v0 -p total_steps:=1e5`.

    Returns 0 on a clean stop (SIGINT/SIGTERM, or `exit_when_done`), 2 on bad parameters.
    """
    # The training thread runs Python (and C calls that keep the GIL) nearly all the time;
    # shorter GIL turns keep signal handling and the executor responsive (exit within 2 s).
    sys.setswitchinterval(0.0005)
    stop = _StopFlag()
    made: list[TrainNode] = []

    def factory(context: Any) -> TrainNode:
        made.append(TrainNode(context=context, stop=stop))
        return made[-1]

    code = run_nodes(factory, args=args, num_threads=4, stop=stop, name=NODE_NAME)
    if made and made[0].training:
        # The iteration outlived the grace period: leave without it. Its checkpoint writes are
        # atomic, so the newest checkpoint on disk stays whole (a stray temp file at worst).
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


if __name__ == '__main__':
    raise SystemExit(main())
