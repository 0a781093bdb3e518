"""colcon build of the package in a temporary workspace + static checks of both launch files."""

from __future__ import annotations

import os
from pathlib import Path
import shutil
import signal
import subprocess
import sys
import time

from launch_check import console_scripts, LaunchFile, split_share, yaml_parameter_keys
import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
PACKAGE_ITEMS = ('package.xml', 'setup.py', 'setup.cfg', 'resource', 'trpo_ros', 'launch',
                 'config', 'sim')
LAUNCH_FILES = ('train.launch.py', 'deploy.launch.py')
SCRIPTS = ('train_node', 'inference_node', 'sim_node', 'trpo-ros')
_DECLARED: dict[str, set[str]] = {}


@pytest.fixture(scope='module')
def install(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`colcon build` of a copy of the package; returns install/trpo_ros."""
    ws = tmp_path_factory.mktemp('ws')
    src = ws / 'src' / 'trpo_ros'
    src.mkdir(parents=True)
    for item in PACKAGE_ITEMS:
        source = REPO / item
        if source.is_dir():
            shutil.copytree(source, src / item,
                            ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))
        else:
            shutil.copy2(source, src / item)
    bin_dir = Path(sys.executable).parent
    colcon = bin_dir / 'colcon' if (bin_dir / 'colcon').exists() else shutil.which('colcon')
    assert colcon, 'colcon not found (pip install colcon-common-extensions)'
    env = dict(os.environ, PATH=f'{bin_dir}{os.pathsep}{os.environ.get("PATH", "")}')
    result = subprocess.run([str(colcon), 'build', '--base-paths', 'src'], cwd=ws, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return ws / 'install' / 'trpo_ros'


def _site_packages(install: Path) -> Path:
    found = sorted(install.glob('lib/python*/site-packages'))
    assert found, f'no site-packages under {install}/lib'
    return found[0]


def test_colcon_build_installs_scripts_share_and_index(install: Path) -> None:
    for script in SCRIPTS:
        path = install / 'lib' / 'trpo_ros' / script
        assert path.is_file() and os.access(path, os.X_OK), path
    share = install / 'share' / 'trpo_ros'
    assert (install / 'share' / 'ament_index' / 'resource_index' / 'packages' /
            'trpo_ros').is_file()
    assert (share / 'package.xml').is_file()
    for folder in ('launch', 'config', 'sim'):
        repo_files = {p.relative_to(REPO) for p in (REPO / folder).rglob('*')
                      if p.is_file() and '__pycache__' not in p.parts}
        installed = {p.relative_to(share) for p in (share / folder).rglob('*') if p.is_file()}
        assert repo_files and repo_files <= installed, repo_files - installed
    for required in ('launch/train.launch.py', 'launch/deploy.launch.py', 'config/train.yaml',
                     'config/deploy.yaml', 'config/rviz/trpo.rviz', 'sim/kuka_reach.yaml'):
        assert (share / required).is_file(), required
    assert (_site_packages(install) / 'trpo_ros' / 'nodes' / 'train_node.py').is_file()


def test_installed_train_node_starts_and_stops(install: Path, tmp_path: Path) -> None:
    # What `source install/setup.bash` sets for this package (trpo_ros.sim finds share/ by it).
    env = dict(os.environ, PYTHONPATH=str(_site_packages(install)), PYTHONUNBUFFERED='1',
               AMENT_PREFIX_PATH=str(install))
    where = subprocess.run([sys.executable, '-c', 'import trpo_ros; print(trpo_ros.__file__)'],
                           env=env, cwd=tmp_path, capture_output=True, text=True,
                           check=True).stdout
    assert str(install) in where, f'trpo_ros imported from {where}, not from the install'
    log_path = tmp_path / 'train_node.log'
    with open(log_path, 'wb') as log:
        proc = subprocess.Popen(
            [str(install / 'lib' / 'trpo_ros' / 'train_node'), '--ros-args',
             '-p', f'run_dir:={tmp_path / "run"}', '-p', 'total_steps:=100000',
             '-p', 'n_steps:=256', '-p', 'tensorboard:=false', '-p', 'preview_rate_hz:=0.0'],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
        try:
            deadline = time.monotonic() + 90
            while 'training trpo_ros/KukaReach-v0' not in log_path.read_text(errors='replace'):
                assert proc.poll() is None, log_path.read_text(errors='replace')
                assert time.monotonic() < deadline, log_path.read_text(errors='replace')
                time.sleep(0.1)
            time.sleep(1.0)  # a few iterations in
            proc.send_signal(signal.SIGINT)
            code = proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    text = log_path.read_text(errors='replace')
    assert code == 0, text
    assert 'Traceback' not in text, text


@pytest.fixture
def declared(tmp_path: Path) -> dict[str, set[str]]:
    """Parameter names each trpo_ros node declares, read from real node instances."""
    if _DECLARED:
        return _DECLARED
    import rclpy
    from rclpy.context import Context
    from rclpy.parameter import Parameter
    from rclpy.signals import SignalHandlerOptions
    from trpo_ros.nodes.inference_node import InferenceNode
    from trpo_ros.nodes.launch_support import declared_parameters
    from trpo_ros.nodes.sim_node import SimNode
    from trpo_ros.nodes.train_node import TrainNode

    context = Context()
    rclpy.init(args=[], context=context, signal_handler_options=SignalHandlerOptions.NO)
    try:
        factories = {
            'train_node': lambda: TrainNode(context=context, start=False, parameter_overrides=[
                Parameter('run_dir', value=str(tmp_path / 'run')),
                Parameter('preview_rate_hz', value=0.0), Parameter('tensorboard', value=False)]),
            'inference_node': lambda: InferenceNode(context=context, parameter_overrides=[
                Parameter('autostart', value=False)]),
            'sim_node': lambda: SimNode(context=context),
        }
        for executable, make in factories.items():
            node = make()
            try:
                _DECLARED[executable] = set(node.list_parameters([], 0).names)
            finally:
                node.destroy_node()
    finally:
        rclpy.shutdown(context=context)
    assert set(declared_parameters()) <= _DECLARED['train_node']
    return _DECLARED


def launch_problems(source: Path, install: Path, declared: dict[str, set[str]]) -> list[str]:
    """Everything wrong with a launch file: executables, parameters, referenced files."""
    problems: list[str] = []
    launch = LaunchFile(source)
    scripts = console_scripts(REPO / 'setup.py')
    share = install / 'share' / 'trpo_ros'
    ours = [n for n in launch.nodes() if n.package == 'trpo_ros']
    if not ours:
        problems.append('no trpo_ros Node found')
    for node in ours:
        where = f'{source.name}:{node.lineno}'
        if node.executable not in scripts:
            problems.append(f'{where}: {node.executable!r} is not a console script')
            continue
        if not (install / 'lib' / 'trpo_ros' / node.executable).is_file():
            problems.append(f'{where}: {node.executable} not installed')
        if node.unresolved:
            problems.append(f'{where}: cannot check parameters {node.unresolved}')
        names = declared[node.executable]
        unknown = set(node.parameter_keys) - names
        if unknown:
            problems.append(f'{where}: {node.executable} does not declare {sorted(unknown)}')
        for path in node.parameter_files:
            parts = split_share(path)
            if not parts or parts[0] != 'trpo_ros':
                problems.append(f'{where}: params file {path} is not in share/trpo_ros')
                continue
            repo_file, share_file = REPO / parts[1], share / parts[1]
            if not (repo_file.is_file() and share_file.is_file()):
                problems.append(f'{where}: params file {parts[1]} missing')
                continue
            keys = yaml_parameter_keys(repo_file, node.name or node.executable)
            if not keys:
                problems.append(f'{where}: {parts[1]} sets nothing for {node.name}')
            unknown = set(keys) - names
            if unknown:
                problems.append(f'{where}: {parts[1]} sets undeclared {sorted(unknown)}')
    share_paths = launch.share_paths()
    if not share_paths:
        problems.append('no share path resolved')
    for package, relative in share_paths:
        # a file, or a folder the launch file joins file names to
        if package != 'trpo_ros' or not (REPO / relative).exists() \
                or not (share / relative).exists():
            problems.append(f'{source.name}: {package}/{relative} not in the repo + install')
    return problems


@pytest.mark.parametrize('launch_name', LAUNCH_FILES)
def test_launch_file_static(launch_name: str, install: Path,
                            declared: dict[str, set[str]]) -> None:
    source = REPO / 'launch' / launch_name
    installed = install / 'share' / 'trpo_ros' / 'launch' / launch_name
    assert installed.read_text() == source.read_text()
    assert launch_problems(source, install, declared) == []
    launch = LaunchFile(source)
    if launch_name == 'train.launch.py':
        assert ('trpo_ros', 'config/rviz/trpo.rviz') in launch.share_paths()
        assert ('trpo_ros', 'config/train.yaml') in launch.share_paths()
        assert {n.executable for n in launch.nodes()} >= {'train_node', 'robot_state_publisher',
                                                          'rviz2'}
        train = next(n for n in launch.nodes() if n.executable == 'train_node')
        assert set(train.parameter_keys) == {'env', 'total_steps', 'seed', 'n_envs', 'run_dir',
                                             'resume'}


def test_launch_check_catches_mistakes(tmp_path: Path, install: Path,
                                       declared: dict[str, set[str]]) -> None:
    bad = tmp_path / 'bad.launch.py'
    bad.write_text(
        'import os\n'
        'from ament_index_python.packages import get_package_share_directory\n'
        'from launch_ros.actions import Node\n'
        'def generate_launch_description():\n'
        "    share = get_package_share_directory('trpo_ros')\n"
        "    params = os.path.join(share, 'config', 'missing.yaml')\n"
        "    return [Node(package='trpo_ros', executable='train_node', name='train_node',\n"
        "                 parameters=[params, {'n_stepz': 5}]),\n"
        "            Node(package='trpo_ros', executable='no_such_node')]\n")
    problems = '\n'.join(launch_problems(bad, install, declared))
    assert "does not declare ['n_stepz']" in problems
    assert 'config/missing.yaml' in problems
    assert "'no_such_node' is not a console script" in problems
