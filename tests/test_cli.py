"""The `trpo-ros` command as a user runs it: help, one-line errors with exit code 2."""

import subprocess
import sys

import pytest
from trpo_ros.cli import build_parser
from trpo_ros.core.config import FIELDS

SUBCOMMANDS = ('train', 'eval', 'export', 'serve', 'sim', 'deploy-sim', 'demo')


def run(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, '-m', 'trpo_ros.cli', *args], capture_output=True,
                          text=True, timeout=120, cwd=cwd)


@pytest.mark.unit
def test_every_subcommand_option_has_help():
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == 'command').choices
    assert set(SUBCOMMANDS) <= set(subparsers)
    for name, sub in subparsers.items():
        for action in sub._actions:
            assert action.help, f'{name} {action.option_strings or action.dest} has no help'
    train_flags = {s for a in subparsers['train']._actions for s in a.option_strings}
    for field in FIELDS:  # every config field can be overridden from the command line
        assert '--' + field.replace('_', '-') in train_flags


@pytest.mark.integration
def test_help_of_each_subcommand_runs():
    for name in SUBCOMMANDS:
        result = run(name, '--help')
        assert result.returncode == 0, result.stderr
        assert 'usage: trpo-ros ' + name in result.stdout


def run_in_process(capsys, monkeypatch, cwd, *args: str) -> tuple[int, str]:
    """Run main() in this process (no interpreter start-up per case): exit code and stderr."""
    from trpo_ros.cli import main

    monkeypatch.chdir(cwd)
    try:
        code = main(list(args))
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err


@pytest.mark.integration
@pytest.mark.parametrize('args, message', [
    (['train', '--bogus'], 'unrecognized arguments: --bogus'),
    (['train', '--delta', '0', '--env', 'Pendulum-v1'], 'delta must be > 0'),
    (['train', '--n-steps', 'many'], 'bad value for n_steps'),
    (['train', '--env', 'NoSuchEnv-v7'], "unknown or unusable env id 'NoSuchEnv-v7'"),
    (['train', '--env', 'CartPole-v1'], 'Discrete action space'),
    (['eval', '.'], 'is not a trpo_ros run'),
    (['export', 'no/such/run'], 'no such run directory'),
    (['eval', 'x', '--episodes', '-3'], 'expected a positive integer'),
    (['nonsense'], 'invalid choice'),
])
def test_bad_input_is_one_line_and_exit_code_2(tmp_path, capsys, monkeypatch, args, message):
    code, stderr = run_in_process(capsys, monkeypatch, tmp_path, *args)
    assert code == 2, stderr
    errors = [line for line in stderr.splitlines() if 'pybullet build time' not in line]
    assert len(errors) == 1, stderr
    assert errors[0].startswith('trpo-ros') and message in errors[0], errors[0]
    assert list(tmp_path.iterdir()) == []  # nothing written


@pytest.mark.integration
def test_training_over_ros_without_a_robot_is_one_line(tmp_path, capsys, monkeypatch):
    # RosEnvError is a UserError: nobody publishing joint states is bad input, not a bug.
    code, stderr = run_in_process(capsys, monkeypatch, tmp_path, 'train', '--env',
                                  'trpo_ros/RosReach-v0', '--env-kwargs', '{connect_timeout: 1}',
                                  '--n-envs', '1', '--n-steps', '512', '--total-steps', '512',
                                  '--run-dir', str(tmp_path / 'run'), '--no-progress')
    assert code == 2 and 'Traceback' not in stderr, stderr
    assert 'no sensor_msgs/JointState on /joint_states within 1 s' in stderr, stderr


@pytest.mark.integration
def test_bad_input_from_the_console_script_has_no_traceback(tmp_path):
    result = run('train', '--env', 'CartPole-v1', cwd=tmp_path)
    assert result.returncode == 2
    assert 'Traceback' not in result.stderr and 'Discrete action space' in result.stderr


@pytest.mark.integration
def test_bad_config_file_and_resume_of_non_run(tmp_path, capsys, monkeypatch):
    bad = tmp_path / 'bad.yaml'
    bad.write_text('delta: -1\n')
    code, err = run_in_process(capsys, monkeypatch, tmp_path, 'train', '--config', str(bad))
    assert code == 2 and 'delta must be > 0' in err
    code, err = run_in_process(capsys, monkeypatch, tmp_path, 'train', '--resume', str(tmp_path))
    assert code == 2 and 'is not a trpo_ros run' in err
    unknown = tmp_path / 'unknown.yaml'
    unknown.write_text('deltaa: 0.1\n')
    code, err = run_in_process(capsys, monkeypatch, tmp_path, 'train', '--config', str(unknown))
    assert code == 2 and "unknown config field 'deltaa'" in err


@pytest.mark.integration
def test_train_eval_export_round_trip(tmp_path):
    run_dir = tmp_path / 'run'
    result = run('train', '--env', 'Pendulum-v1', '--total-steps', '512', '--n-steps', '256',
                 '--eval-every', '0', '--run-dir', str(run_dir), '--no-progress')
    assert result.returncode == 0, result.stderr
    assert (run_dir / 'policy.onnx').is_file()
    result = run('eval', str(run_dir), '--episodes', '2')
    assert result.returncode == 0 and '2 episodes, deterministic: return' in result.stdout
    result = run('export', str(run_dir), '-o', str(tmp_path / 'p.onnx'))
    assert result.returncode == 0 and (tmp_path / 'p.onnx').is_file()
    # Resuming with a larger budget continues the same run.
    result = run('train', '--resume', str(run_dir), '--total-steps', '1024', '--no-progress')
    assert result.returncode == 0, result.stderr
    assert 'done: 1024 steps, 4 iterations' in result.stdout
    # The one resume rule: equal values are fine, a changed field is refused by name.
    result = run('train', '--resume', str(run_dir), '--n-steps', '256', '--total-steps', '1280',
                 '--no-progress')
    assert result.returncode == 0, result.stderr
    result = run('train', '--resume', str(run_dir), '--n-steps', '512', '--total-steps', '2048')
    assert result.returncode == 2 and 'changed: n_steps (256 -> 512)' in result.stderr, \
        result.stderr
    assert result.stderr.count('\n') == 1 and 'Traceback' not in result.stderr
    # A new run into an existing run directory is refused, nothing overwritten.
    before = (run_dir / 'metrics.csv').read_bytes()
    result = run('train', '--env', 'Pendulum-v1', '--run-dir', str(run_dir))
    assert result.returncode == 2 and 'already holds a run' in result.stderr
    assert (run_dir / 'metrics.csv').read_bytes() == before


@pytest.mark.integration
@pytest.mark.parametrize('args, text', [
    (['train', '--env', 'NoSuchEnv-v9', '--total-steps', '64'], 'NoSuchEnv-v9'),
    (['train', '--ros', '--n-steps', 'many'], 'n_steps'),
    (['eval', '/nonexistent/run'], '/nonexistent/run'),
    (['export', '/nonexistent/run'], '/nonexistent/run'),
    (['serve', '/nonexistent.onnx'], 'policy file not found'),
    (['sim', '--model', '/nonexistent.onnx'], 'policy file not found'),
    (['sim', '--robot-yaml', '/nonexistent.yaml'], 'not found'),
    (['sim', '--env', 'Pendulum-v1'], 'not a trpo_ros robot env'),
    (['deploy-sim', '/nonexistent.onnx'], 'policy file not found'),
    (['demo', '--out', '/proc/no_such_dir/out'], 'no_such_dir'),
], ids=['train', 'train-ros', 'eval', 'export', 'serve', 'sim-model', 'sim-yaml', 'sim-env',
        'deploy-sim', 'demo'])
def test_every_verb_reports_bad_input_in_one_line(args, text):
    result = run(*args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if 'pybullet build time' not in line]
    assert len(lines) == 1 and lines[0].startswith('trpo-ros: error: '), result.stderr
    assert text in lines[0], lines[0]
