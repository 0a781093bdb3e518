"""
Training in a background thread, with requests that run between two iterations (ROS-free).

train_node is a thin ROS adapter over :class:`TrainingController`: the thread runs
:meth:`Trainer.train`; save, export and pause requests wait for the running iteration to end
(one lock the thread holds during an iteration), so a checkpoint never mixes two iterations,
and the thread lets a waiting request in before it starts the next one.
"""

from __future__ import annotations

from collections.abc import Callable
import copy
from pathlib import Path
import threading
import time
from typing import Any

from trpo_ros.core.checkpoint import PolicyBundle

STATES = ('starting', 'training', 'paused', 'exporting', 'done', 'stopped', 'failed')
"""What `TrainingController.state` can be."""


class TrainingController:
    """
    Runs one Trainer in a thread; `save`, `export`, `pause` and `stop` are safe from any thread.

    `on_iteration(row)` runs in the training thread after every iteration, under the lock;
    `on_end(state, error)` once when the thread ends (state 'done', 'stopped' or 'failed';
    `error` is the exception of a failed run, else None).
    """

    def __init__(self, trainer: Any, on_iteration: Callable[[dict[str, float]], None],
                 on_end: Callable[[str, BaseException | None], None]) -> None:
        self.trainer = trainer
        self.state = 'starting'
        self._on_iteration, self._on_end = on_iteration, on_end
        self._lock = threading.Lock()  # held by the training thread during an iteration
        self._waiting = 0  # requests waiting for the lock (the thread lets them in)
        self._waiting_lock = threading.Lock()
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        """Tell whether the training thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the training thread."""
        self.state = 'training'
        self._thread = threading.Thread(target=self._run, name='trpo_train', daemon=True)
        self._thread.start()

    def _run(self) -> None:
        trainer = self.trainer
        try:
            # A stop keeps the progress in a checkpoint (atomic write) and skips the export,
            # so shutdown stays quick.
            trainer.train(self._after_iteration, lock=self._lock,
                          hold=lambda: self._waiting > 0, export_on_stop=False)
        except Exception as exc:  # noqa: BLE001 - reported; the adapter decides what next
            self.state = 'failed'
            self._on_end('failed', exc)
            return
        self.state = 'stopped' if trainer.stop_event.is_set() else 'done'
        self._on_end(self.state, None)

    def _after_iteration(self, trainer: Any, row: dict[str, float]) -> None:
        if trainer.env_steps >= trainer.config.total_steps:
            self.state = 'exporting'  # the final checkpoint and export come next
        self._on_iteration(row)

    def between_iterations(self, work: Callable[[], Any], timeout: float = 120.0) -> Any:
        """Run `work()` while no iteration runs (waits for the current one to end)."""
        with self._waiting_lock:
            self._waiting += 1
        try:
            deadline = time.monotonic() + timeout
            while not self._lock.acquire(timeout=0.05):
                if self._closing.is_set() or time.monotonic() > deadline:
                    raise TimeoutError('node is shutting down' if self._closing.is_set()
                                       else 'timed out waiting for the iteration to end')
        finally:
            with self._waiting_lock:
                self._waiting -= 1
        try:
            return work()
        finally:
            self._lock.release()

    def save(self) -> Path:
        """Checkpoint between two iterations; returns its path."""
        return Path(self.between_iterations(lambda: self.trainer.save(export=False)))

    def export(self) -> Path:
        """Checkpoint and export run_dir/policy.onnx between two iterations; returns its path."""
        return Path(self.between_iterations(self.trainer.export))

    def pause(self, paused: bool) -> str:
        """Pause after the current iteration (True) or resume (False); returns what happened."""
        if paused:
            self.trainer.pause_event.set()
            self.state = 'paused' if self.running else self.state
            return 'paused (after the current iteration)'
        self.trainer.pause_event.clear()
        self.state = 'training' if self.running else self.state
        return 'resumed'

    def stop(self, timeout: float) -> bool:
        """Stop after the running iteration; True if the thread ended within `timeout` s."""
        self._closing.set()
        self.trainer.stop_event.set()
        self.trainer.pause_event.clear()
        if self._thread is not None:
            self._thread.join(timeout)
        return not self.running

    def policy_copy(self) -> PolicyBundle:
        """Return a private copy of the policy (taken between iterations: consistent)."""
        t = self.trainer
        with t.policy_lock:
            policy = copy.deepcopy(t.policy)
        return PolicyBundle(t.config, policy, t.env_info, t.iteration, t.env_steps)
