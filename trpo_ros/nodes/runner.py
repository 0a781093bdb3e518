"""
Run nodes in a process (multi- or single-threaded executor), clean SIGINT/SIGTERM exit.

rclpy's own signal handlers are turned off; SIGINT and SIGTERM set a flag that the spin loop
checks at least every `poll` seconds, then the nodes are destroyed, the context shut down, and
the process exits 0 (what `ros2 launch` expects when it stops a node). Bad parameters at
start-up (a :class:`trpo_ros.errors.UserError` from the node's constructor, or --ros-args rclpy
cannot parse) are one ``[ERROR]`` line and exit code 2, never a traceback.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
import signal
import sys
import threading
from typing import Any

import rclpy
from rclpy.context import Context
from rclpy.executors import (
    Executor,
    ExternalShutdownException,
    MultiThreadedExecutor,
    SingleThreadedExecutor,
)
import rclpy.logging
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions
from trpo_ros.errors import UserError

EXIT_BAD_PARAMETERS = 2

NodeFactory = Callable[[Context], 'Node | Sequence[Node]']


class StopFlag:
    """Set by SIGINT/SIGTERM (or by code); `install()` hooks the signals in the main thread."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signal_name = ''

    def set(self, reason: str = 'stop') -> None:  # noqa: A003 - threading.Event-like API
        """Ask the spin loop to stop."""
        self.signal_name = self.signal_name or reason
        self.event.set()

    def is_set(self) -> bool:
        """Tell whether a stop was requested."""
        return self.event.is_set()

    def install(self) -> None:
        """Route SIGINT and SIGTERM to this flag (only possible from the main thread)."""
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handler)

    def _handler(self, signum: int, _frame: Any) -> None:
        self.set(signal.Signals(signum).name)


def spin_until(executor: Executor, stop: Callable[[], bool],
               poll: float = 0.1) -> None:
    """Spin `executor` until `stop()` is true or its context shuts down."""
    context = executor.context
    try:
        while context.ok() and not stop():
            executor.spin_once(timeout_sec=poll)
    except (ExternalShutdownException, KeyboardInterrupt):
        pass


def drain(executor: Executor) -> None:
    """
    Let in-flight callbacks finish, then shut the executor down.

    rclpy's `Executor.shutdown` destroys its guard condition before the worker threads end,
    so a callback still running at that moment fails noisily; joining the pool first avoids it.
    """
    pool = getattr(executor, '_executor', None)  # the ThreadPoolExecutor (Humble..Kilted)
    if pool is not None:
        pool.shutdown(wait=True)
    executor.shutdown(timeout_sec=1.0)


def run_nodes(factory: NodeFactory, args: Sequence[str] | None = None,
              num_threads: int | None = None, stop: StopFlag | None = None,
              name: str = 'trpo_ros') -> int:
    """
    Create the nodes from `factory(context)` and spin them until SIGINT/SIGTERM.

    Parameters
    ----------
    factory
        builds the node(s) in the given (initialized) context.
    args
        command line (``--ros-args ...`` is honoured), default sys.argv.
    num_threads
        executor threads (default: rclpy's choice); 1 = a SingleThreadedExecutor
        (lowest latency and jitter for a single node whose callbacks are all short).
    stop
        a flag to stop from code (tests); signals are always routed to it.
    name
        logger name of the start-up error line (the node's name).

    Returns
    -------
        0 on a clean stop, 2 on bad parameters at start-up.

    """
    from rclpy._rclpy_pybind11 import RCLError
    from rclpy.exceptions import InvalidParameterTypeException, ParameterException

    stop = stop or StopFlag()
    stop.install()
    context = Context()
    try:
        rclpy.init(args=args, context=context, signal_handler_options=SignalHandlerOptions.NO)
    except RCLError as exc:  # unparsable --ros-args
        sys.stderr.write(f'[ERROR] [{name}]: bad arguments: {str(exc).splitlines()[0]}\n')
        return EXIT_BAD_PARAMETERS
    nodes: list[Node] = []
    executor = None
    try:
        try:
            made = factory(context)
        except (UserError, ParameterException, InvalidParameterTypeException) as exc:
            rclpy.logging.get_logger(name).error(f'bad parameters: {exc}')
            return EXIT_BAD_PARAMETERS
        nodes = [made] if isinstance(made, Node) else list(made)
        executor = SingleThreadedExecutor(context=context) if num_threads == 1 \
            else MultiThreadedExecutor(num_threads=num_threads, context=context)
        for node in nodes:
            executor.add_node(node)
        spin_until(executor, stop.is_set)
    finally:
        if executor is not None:
            drain(executor)
        for node in nodes:
            try:
                node.destroy_node()
            except Exception:  # noqa: BLE001 - best effort while exiting
                pass
        if context.ok():
            rclpy.shutdown(context=context)
        # Stopping: a late second SIGINT (ros2 launch forwards the Ctrl-C that already reached
        # the process group) must not kill the exiting interpreter (exit -2 instead of 0).
        if stop.is_set() and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.SIG_IGN)
    return 0
