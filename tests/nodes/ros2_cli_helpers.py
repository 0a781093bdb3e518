"""
Helpers for tests that drive the package with ROS 2's real `ros2` command line.

`ros2` comes from `.venv/bin` (`bash ../shared/ros2_launch/install.sh .venv`) or from a sourced
ROS 2 install on PATH. :func:`build_workspace` builds this package with colcon into a scratch
workspace and returns what `source install/setup.bash` adds to the environment;
:class:`Ros2Cli` runs `ros2 ...` commands (timeout, retries) and `ros2 launch` processes
(:class:`Launch`: own process group, stopped with SIGINT like Ctrl-C in a terminal).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
import os
from pathlib import Path
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
INSTALL_HINT = ('bash ../shared/ros2_launch/install.sh .venv (from the repo root; see '
                '../shared/ros2_launch/README.md), or source a ROS 2 install '
                '(source /opt/ros/<distro>/setup.bash)')
REQUIRE_ENV = 'TRPO_ROS_REQUIRE_ROS2'
# Variables a colcon setup script may set that must not leak from the build-time environment.
_PER_TEST = {'ROS_DOMAIN_ID', 'PWD', 'OLDPWD', 'SHLVL', '_'}


def ros2_required() -> bool:
    """Tell whether a missing `ros2` is a failure (TRPO_ROS_REQUIRE_ROS2=1)."""
    return os.environ.get(REQUIRE_ENV, '') == '1'


def find_tool(name: str) -> str | None:
    """Path of `name` in the virtualenv's bin folder, else on PATH (None if neither)."""
    candidate = VENV_BIN / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    return shutil.which(name)


def missing_tool(what: str) -> None:
    """Skip the test (fail it where `ros2` is required) because `what` is not installed."""
    message = f'{what} not found; get it with {INSTALL_HINT}'
    if ros2_required():
        pytest.fail(f'{message} ({REQUIRE_ENV}=1: required here)', pytrace=False)
    pytest.skip(message)


def tool_path(base: Mapping[str, str] | None = None) -> str:
    """PATH with the virtualenv's bin folder first."""
    path = (base if base is not None else os.environ).get('PATH', '')
    return os.pathsep.join([str(VENV_BIN), *[p for p in path.split(os.pathsep)
                                             if p and p != str(VENV_BIN)]])


def sourced_environment(setup_bash: Path, base: Mapping[str, str]) -> dict[str, str]:
    """Variables that `source setup_bash` sets or changes, relative to `base`."""
    out = subprocess.run(['bash', '-c', f'source "{setup_bash}" && env -0'], env=dict(base),
                         capture_output=True, timeout=60, check=True).stdout
    after = dict(entry.split('=', 1) for entry in out.decode().split('\0') if '=' in entry)
    return {key: value for key, value in after.items()
            if key not in _PER_TEST and base.get(key) != value}


def build_workspace(workspace: Path, source: Path = REPO) -> dict[str, str]:
    """
    Build `source` with colcon into `workspace`; return the environment overrides.

    The overrides are PATH (virtualenv first) and what `source install/setup.bash` sets
    (AMENT_PREFIX_PATH, PYTHONPATH, COLCON_PREFIX_PATH, ...); merge them into the current
    environment per test, so that each test's ROS_DOMAIN_ID is kept.
    """
    ros2 = find_tool('ros2')
    if ros2 is None:
        missing_tool('ros2 (ROS 2 command line with `ros2 launch`)')
    colcon = find_tool('colcon')
    if colcon is None:
        missing_tool('colcon (pip install colcon-common-extensions, in requirements-test.txt)')
    base = dict(os.environ, PATH=tool_path())
    workspace.mkdir(parents=True, exist_ok=True)
    command = [colcon, '--log-base', str(workspace / 'log'), 'build',
               '--base-paths', str(source), '--build-base', str(workspace / 'build'),
               '--install-base', str(workspace / 'install'), '--symlink-install']
    result = subprocess.run(command, env=base, cwd=workspace, capture_output=True, text=True,
                            timeout=300)
    if result.returncode != 0:
        pytest.fail(f'colcon build failed ({result.returncode}):\n{result.stdout}\n'
                    f'{result.stderr}', pytrace=False)
    overrides = sourced_environment(workspace / 'install' / 'setup.bash', base)
    overrides['PATH'] = tool_path(dict(base, **overrides))
    overrides['PYTHONUNBUFFERED'] = '1'  # node output reaches the launch log line by line
    return overrides


@dataclass
class Result:
    """One finished (or timed-out: returncode None) `ros2 ...` command."""

    args: list[str]
    returncode: int | None
    stdout: str
    stderr: str
    seconds: float

    @property
    def output(self) -> str:
        """Return stdout and stderr together."""
        return self.stdout + self.stderr

    def __str__(self) -> str:
        code = 'timed out' if self.returncode is None else f'exit {self.returncode}'
        return (f"$ {' '.join(self.args)}  ({code}, {self.seconds:.1f} s)\n"
                f'{self.output.rstrip()}')


def _kill_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def run_command(args: Sequence[str], env: Mapping[str, str], timeout: float,
                cwd: Path | None = None) -> Result:
    """Run `args` in a new session; after `timeout` s the group is killed (returncode None)."""
    start = time.monotonic()
    proc = subprocess.Popen(list(args), env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
        code: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        _kill_group(proc, signal.SIGINT)
        try:
            stdout, stderr = proc.communicate(timeout=2.0)
        except subprocess.TimeoutExpired:
            _kill_group(proc, signal.SIGKILL)
            stdout, stderr = proc.communicate()
        code = None
    return Result(list(args), code, stdout or '', stderr or '', time.monotonic() - start)


class Launch:
    """A `ros2 launch ...` process in its own process group; output in a log file."""

    def __init__(self, args: Sequence[str], env: Mapping[str, str], log_path: Path) -> None:
        self.args = list(args)
        self.log_path = log_path
        self._log = open(log_path, 'wb')  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(self.args, env=dict(env), stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.started = time.monotonic()

    def output(self) -> str:
        """Everything the launch (and its nodes) printed so far."""
        return self.log_path.read_text(errors='replace')

    def alive(self) -> bool:
        """Return True while `ros2 launch` runs."""
        return self.proc.poll() is None

    def wait_for(self, pattern: str, timeout: float = 30.0, start: int = 0) -> re.Match:
        """
        Wait for a regular expression in the output (from character `start`).

        Raises AssertionError (with the output) on timeout or when the launch exits first.
        """
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            text = self.output()
            match = regex.search(text, start)
            if match:
                return match
            if not self.alive():
                raise AssertionError(f'launch exited ({self.proc.returncode}) before '
                                     f'{pattern!r} appeared:\n{text}')
            if time.monotonic() > deadline:
                raise AssertionError(f'{pattern!r} not in the launch output after {timeout} s:'
                                     f'\n{text}')
            time.sleep(0.1)

    def stop(self, timeout: float = 20.0) -> tuple[int | None, str]:
        """
        SIGINT to the process group (Ctrl-C), wait; return (exit code, output).

        The exit code is None when the launch had to be killed after `timeout` s.
        """
        code: int | None
        if self.alive():
            _kill_group(self.proc, signal.SIGINT)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(self.proc, signal.SIGKILL)
            self.proc.wait()
            code = None
        if not self._log.closed:
            self._log.close()
        return code, self.output()


class Ros2Cli:
    """Runs `ros2 ...` for one test: its environment (ROS_DOMAIN_ID included), its log folder."""

    def __init__(self, overrides: Mapping[str, str], log_dir: Path) -> None:
        self.env = dict(os.environ, **overrides)
        self.log_dir = log_dir
        self.launches: list[Launch] = []
        self.history: list[Result] = []

    def run(self, *args: str, timeout: float = 20.0,
            until: Callable[[Result], bool] | None = None, retry_for: float = 0.0,
            retry_delay: float = 0.5) -> Result:
        """
        Run `ros2 *args` (killed after `timeout` s); return the result.

        With `until`, run again (for up to `retry_for` s, then give up and return the last
        result) while `until(result)` is false: a node just started may not be discovered yet.
        """
        deadline = time.monotonic() + retry_for
        while True:
            result = run_command(['ros2', *args], self.env, timeout, cwd=self.log_dir)
            self.history.append(result)
            if until is None or until(result) or time.monotonic() + retry_delay > deadline:
                return result
            time.sleep(retry_delay)

    def launch(self, *args: str) -> Launch:
        """Start `ros2 launch *args` (stopped at the end of the test if still running)."""
        return self.start('launch', *args)

    def start(self, *args: str) -> Launch:
        """Start a long-running `ros2 *args` (`launch`, `topic pub -r`): stopped at the end."""
        log = self.log_dir / f'{args[0]}_{len(self.launches)}.log'
        proc = Launch(['ros2', *args], self.env, log)
        self.launches.append(proc)
        return proc

    def transcript(self, last: int = 6) -> str:
        """Return the last `last` commands with their output (for assertion messages)."""
        return '\n'.join(str(result) for result in self.history[-last:])

    def close(self) -> None:
        """Stop launches still running, then this domain's ros2 daemon."""
        for proc in self.launches:
            if proc.alive():
                proc.stop(timeout=10.0)
        run_command(['ros2', 'daemon', 'stop'], self.env, timeout=15.0)


def echo_once(cli: Ros2Cli, topic: str, msg_type: str, timeout: float = 20.0,
              retry_for: float = 0.0) -> Result:
    """
    `ros2 topic echo --once TOPIC TYPE` (waits up to `timeout` s for one message).

    With `retry_for` > 0 an echo that heard nothing is started again for that long (a fresh
    echo discovers the publisher anew; on a loaded machine the first one can miss it).
    """
    return cli.run('topic', 'echo', '--once', topic, msg_type, timeout=timeout,
                   until=lambda r: r.returncode == 0, retry_for=retry_for)


def float_field(text: str, name: str = 'data') -> float:
    """Return the `name: <number>` value of `ros2 topic echo` output (asserts it is there)."""
    match = re.search(rf'^\s*{re.escape(name)}:\s*(\S+)\s*$', text, re.MULTILINE)
    assert match, f'no {name!r} field in:\n{text}'
    return float(match.group(1))
