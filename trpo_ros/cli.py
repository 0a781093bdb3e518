"""
`trpo-ros`: train, eval, export, serve, sim, deploy-sim, demo.

User errors (bad config, unknown env, not a run directory, a bad model file) print one line,
`trpo-ros: error: ...`, and exit with code 2; nothing is overwritten.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
import sys
from typing import Any

from trpo_ros.core.config import field_docs, FIELDS, TRPOConfig
from trpo_ros.errors import UserError

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one line (no usage dump) with exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        """Print `prog: error: message` and exit 2."""
        sys.stderr.write(f'{self.prog}: error: {message}\n')
        sys.exit(EXIT_USAGE)


# Config fields with a short dedicated flag; every other field is --field-name.
_ALIASES = {'env_id': ['--env']}


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    docs = field_docs()
    group = parser.add_argument_group('TRPO configuration (override --config)')
    defaults = TRPOConfig()
    for name in FIELDS:
        flags = _ALIASES.get(name, []) + ['--' + name.replace('_', '-')]
        value = getattr(defaults, name)
        group.add_argument(*flags, dest=name, default=None, metavar=_metavar(value),
                           help=f'{docs.get(name, "")} (default: {_show(value)})')


def _metavar(value: Any) -> str:
    if isinstance(value, bool):
        return 'BOOL'
    if isinstance(value, int):
        return 'N'
    if isinstance(value, float):
        return 'X'
    if isinstance(value, tuple):
        return 'N,N'
    if isinstance(value, dict):
        return 'YAML'
    return 'STR'


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return ','.join(str(v) for v in value)
    return str(value)


def build_parser() -> argparse.ArgumentParser:
    """Build the `trpo-ros` argument parser with every sub-command."""
    parser = _Parser(prog='trpo-ros', description='Train robot policies with TRPO in PyBullet, '
                     'export them to ONNX, serve them on ROS 2.')
    from trpo_ros import __version__

    parser.add_argument('--version', action='version', version=f'trpo_ros {__version__}')
    sub = parser.add_subparsers(dest='command', required=True, parser_class=_Parser)

    train = sub.add_parser('train', help='train a policy with TRPO (writes a run directory)',
                           description='Train a policy with TRPO on a Gymnasium env.')
    train.add_argument('--config', metavar='FILE.yaml', help='YAML file of config fields')
    train.add_argument('--run-dir', metavar='DIR',
                       help='run directory (default: runs/<env>_<time>); must not hold a run')
    train.add_argument('--resume', metavar='RUN_DIR',
                       help='continue the run in RUN_DIR from its last good checkpoint '
                            '(only --total-steps may change)')
    train.add_argument('--no-progress', action='store_true', help='no progress bar')
    train.add_argument('--ros', action='store_true',
                       help='run as the ROS 2 train_node (metrics on /trpo/*, rviz preview)')
    _add_config_options(train)

    evaluate = sub.add_parser('eval', help='evaluate a run deterministically',
                              description='Run the deterministic (mean) policy of a run.')
    evaluate.add_argument('run_dir', metavar='RUN_DIR', help='run directory or checkpoint file')
    evaluate.add_argument('--episodes', type=_positive_int, default=10, help='episodes')
    evaluate.add_argument('--seed', type=int, default=12345, help='seed of the first episode')
    evaluate.add_argument('--video', metavar='FILE.gif',
                          help='also record the first episodes as a GIF')
    evaluate.add_argument('--video-episodes', type=_positive_int, default=3,
                          help='episodes in the GIF')

    export = sub.add_parser('export', help='export a run to ONNX',
                            description='Export the policy of a run to one verified ONNX file.')
    export.add_argument('run_dir', metavar='RUN_DIR', help='run directory or checkpoint file')
    export.add_argument('-o', '--output', metavar='FILE.onnx',
                        help='output file (default: RUN_DIR/policy.onnx)')

    serve = sub.add_parser('serve', help='serve an ONNX policy as the ROS 2 inference_node',
                           description='Run inference_node for MODEL (ROS 2).')
    serve.add_argument('model', metavar='MODEL.onnx', help='exported policy')
    serve.add_argument('--command-topic', default='/forward_position_controller/commands',
                       help='Float64MultiArray command topic')
    serve.add_argument('--obs-timeout', type=float, default=0.5,
                       help='seconds before a state counts as stale (hold command)')

    sim = sub.add_parser('sim', help='run the simulated robot as the ROS 2 sim_node',
                         description='Run sim_node: a PyBullet robot with ros2_control topics.')
    robot = sim.add_mutually_exclusive_group()
    robot.add_argument('--env', default='trpo_ros/KukaReach-v0', help='env id of the robot')
    robot.add_argument('--robot-yaml', metavar='FILE.yaml', help='robot/task YAML of the robot')
    robot.add_argument('--model', metavar='MODEL.onnx',
                       help='simulate the robot this exported policy was trained on')
    sim.add_argument('--mode', choices=('realtime', 'lockstep'), default='realtime',
                     help='step at the control rate, or one step per command')

    deploy = sub.add_parser('deploy-sim', help='closed loop: sim_node + inference_node',
                            description='Serve MODEL against the simulated robot over ROS 2 '
                                        'topics in one process; prints the success rate.')
    deploy.add_argument('model', metavar='MODEL.onnx', help='exported policy')
    deploy.add_argument('--episodes', type=_positive_int, default=20, help='episodes')

    demo = sub.add_parser('demo', help='train, export and serve the default robot end to end',
                          description='Train on trpo_ros/KukaReach-v0, export policy.onnx, '
                                      'serve it over ROS 2 to the simulated robot, summarize.')
    demo.add_argument('--out', default='demo_out', metavar='DIR', help='output directory')
    demo.add_argument('--total-steps', type=_positive_int, default=None,
                      help='training budget (default: the tuned demo budget)')
    demo.add_argument('--episodes', type=_positive_int, default=100,
                      help='evaluation episodes offline and over ROS')
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected a positive integer, got {text!r}') from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f'expected a positive integer, got {text!r}')
    return value


def config_from_args(args: argparse.Namespace) -> TRPOConfig:
    """Build the TRPOConfig from --config FILE plus the command-line overrides."""
    from trpo_ros.core.config import load_config

    overrides = {name: getattr(args, name) for name in FIELDS}
    return load_config(args.config, **overrides)


def cmd_train(args: argparse.Namespace) -> int:
    """`trpo-ros train`."""
    from trpo_ros.core.trainer import default_run_dir, Trainer

    if args.resume:
        from trpo_ros.core.checkpoint import resume_config
        from trpo_ros.core.config import coerce

        if args.config or args.run_dir:
            raise UserError('--config and --run-dir cannot be combined with --resume')
        run_dir = Path(args.resume)
        config = resume_config(run_dir, {n: coerce(n, getattr(args, n)) for n in FIELDS
                                         if getattr(args, n) is not None})
    else:
        config = config_from_args(args)
        run_dir = Path(args.run_dir or default_run_dir(config.env_id))
    if args.ros:  # the same checks first, so bad input is one line here too
        from trpo_ros.nodes import train_node

        return train_node.main(_ros_args_from_train(args))
    from trpo_ros.export import export_onnx

    trainer = Trainer(config, run_dir, resume=bool(args.resume), progress=not args.no_progress,
                      exporter=export_onnx)
    try:
        print(f'run directory: {run_dir}', flush=True)
        trainer.train()
        result = trainer.evaluate()
    finally:
        trainer.close()
    print(f'done: {trainer.env_steps} steps, {trainer.iteration} iterations; evaluation '
          f'{_format_eval(result)}; policy: {run_dir / "policy.onnx"}')
    return 0


def _ros_args_from_train(args: argparse.Namespace) -> list[str]:
    """
    Translate train options into --ros-args parameters for train_node.

    train_node exits when training is done, like the plain `trpo-ros train`.
    """
    params = [f'{n}:={_ros_value(n, getattr(args, n))}' for n in FIELDS
              if getattr(args, n) is not None]
    params.append('exit_when_done:=true')
    if args.run_dir:
        params.append(f'run_dir:={args.run_dir}')
    if args.resume:
        params.append(f'resume:={args.resume}')
    if args.config:
        params.append(f'config_file:={args.config}')
    ros_args: list[str] = ['--ros-args']
    for param in params:
        ros_args += ['-p', param]
    return ros_args


def _ros_value(name: str, value: str) -> str:
    """Tuple fields (hidden_sizes) become ROS integer arrays; everything else passes as is."""
    if isinstance(getattr(TRPOConfig(), name), tuple) and not value.startswith('['):
        return '[' + value + ']'
    return value


def _format_eval(result: dict[str, float]) -> str:
    text = f"return {result['return_mean']:.2f} ± {result['return_std']:.2f}"
    if 'success_rate' in result:
        text += f", success {result['success_rate']:.0%}"
    return text


def cmd_eval(args: argparse.Namespace) -> int:
    """`trpo-ros eval`."""
    from trpo_ros.core.checkpoint import load_policy
    from trpo_ros.core.rollout import evaluate, make_env

    bundle = load_policy(args.run_dir)
    env = make_env(bundle.config.env_id, bundle.config.env_kwargs)
    try:
        result = evaluate(env, bundle.act, args.episodes, args.seed)
    finally:
        env.close()
    print(f'{args.episodes} episodes, deterministic: {_format_eval(result)}')
    if args.video:
        from trpo_ros.demo import record_video

        path = record_video(bundle, args.video, args.video_episodes, args.seed)
        print(f'video: {path}')
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """`trpo-ros export`."""
    from trpo_ros.export import export_onnx

    run = Path(args.run_dir)
    output = Path(args.output) if args.output else (run if run.is_dir() else run.parent.parent) \
        / 'policy.onnx'
    path = export_onnx(run, output)
    print(f'exported and verified: {path}')
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """`trpo-ros serve`."""
    from trpo_ros.nodes import inference_node
    from trpo_ros.runtime import Policy

    Policy.load(args.model)  # a bad file is one line here, not a node waiting for a model
    return inference_node.main(['--ros-args', '-p', f'model_path:={args.model}',
                                '-p', f'command_topic:={args.command_topic}',
                                '-p', f'obs_timeout:={args.obs_timeout}']) or 0


def cmd_sim(args: argparse.Namespace) -> int:
    """`trpo-ros sim`."""
    from trpo_ros.nodes import sim_node

    robot = (f'model_path:={args.model}' if args.model else
             f'robot_yaml:={args.robot_yaml}' if args.robot_yaml else f'env:={args.env}')
    sim_node.robot_to_simulate({'model_path': args.model or '', 'robot_yaml':
                                args.robot_yaml or '', 'env': args.env})  # bad input: one line
    return sim_node.main(['--ros-args', '-p', robot, '-p', f'mode:={args.mode}']) or 0


def cmd_deploy_sim(args: argparse.Namespace) -> int:
    """`trpo-ros deploy-sim`."""
    from trpo_ros.nodes.deploy_sim import deploy_sim

    result = deploy_sim(args.model, episodes=args.episodes)
    print(format_deploy(result))
    if not result['completed']:
        raise UserError(f"timed out after {result['episodes']} of {args.episodes} episodes")
    return 0


def format_deploy(result: dict[str, Any]) -> str:
    """One line about a closed-loop run over ROS."""
    return (f"over ROS: {result['episodes']} episodes, success {result['success_rate']:.0%}, "
            f"state->command latency p50 {result['latency_p50_ms']:.2f} ms, "
            f"p99 {result['latency_p99_ms']:.2f} ms")


def cmd_demo(args: argparse.Namespace) -> int:
    """`trpo-ros demo`."""
    from trpo_ros.demo import run_demo

    return run_demo(Path(args.out), total_steps=args.total_steps, episodes=args.episodes)


COMMANDS = {'train': cmd_train, 'eval': cmd_eval, 'export': cmd_export, 'serve': cmd_serve,
            'sim': cmd_sim, 'deploy-sim': cmd_deploy_sim, 'demo': cmd_demo}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `trpo-ros` console script."""
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        return 130
    except (UserError, OSError) as exc:  # bad input is one line; bugs keep their traceback
        sys.stderr.write(f'trpo-ros: error: {exc}\n')
        return EXIT_USAGE


if __name__ == '__main__':
    sys.exit(main())
