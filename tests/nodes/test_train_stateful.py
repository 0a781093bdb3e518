"""
train_node's services at random moments of every phase, over real DDS (a state machine).

One train_node per example trains KukaReach with tiny iterations; the machine calls
~/save_checkpoint, ~/export_policy and ~/pause at random times — while collecting, while
updating, during and after the final export — and tries to change read-only parameters.
After every step the process is alive; every save names a checkpoint that loads, every export
a policy the runtime serves; a pause stops the iterations, a resume restarts them; SIGINT in
the end exits 0 and leaves a whole checkpoint.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
import signal
import tempfile
import threading
import time

from hypothesis import strategies as st
from hypothesis.stateful import invariant, rule, RuleBasedStateMachine
from nodes_helpers import NodeProcess, Probe, run_stateful
import pytest
from std_msgs.msg import Float64
from std_srvs.srv import SetBool, Trigger
from trpo_ros.core.checkpoint import load_checkpoint, load_latest_good
from trpo_ros.runtime import Policy

pytestmark = pytest.mark.integration

EXAMPLES, STEPS = 2, 100
ITERATIONS = 25  # the budget ends (final export) about halfway through an example
steps_run = [0]


class TrainMachine(RuleBasedStateMachine):
    """An operator console calling one train_node's services at random moments."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix='trpo_train_stateful_'))
        self.run_dir = self.dir / 'run'
        self.probe = Probe()
        self.iterations = self.probe.listen(Float64, '/trpo/iteration')
        self.proc = NodeProcess('trpo_ros.nodes.train_node', {
            'env_id': 'trpo_ros/KukaReach-v0', 'n_steps': 128, 'n_envs': 1, 'eval_every': 0,
            'tensorboard': False, 'checkpoint_every': 5, 'preview_rate_hz': 0.0,
            'total_steps': 128 * ITERATIONS, 'run_dir': str(self.run_dir)},
            self.dir / 'train.log')
        self.probe.wait_for(lambda: self.iterations, timeout=60)
        self.first_iteration = time.monotonic()

    def teardown(self) -> None:
        """SIGINT while a save is asked for: exit 0, the newest checkpoint is whole."""
        alive = self.proc.alive()
        replies: list[Trigger.Response] = []

        def save() -> None:
            with contextlib.suppress(AssertionError):  # no reply at all is fine while stopping
                replies.append(self.probe.call(Trigger, '/train_node/save_checkpoint',
                                               Trigger.Request(), timeout=5))

        saving = threading.Thread(target=save)
        saving.start()
        time.sleep(0.05)
        code, _ = self.proc.stop(signal.SIGINT, timeout=10)
        saving.join(timeout=10)
        self.probe.close()
        for reply in replies:  # a reply is a saved checkpoint or a clean refusal
            assert reply.success or 'shutting down' in reply.message, reply.message
        assert alive and code == 0, self.proc.log()[-3000:]
        load_latest_good(self.run_dir)

    def trigger(self, service: str) -> Trigger.Response:
        return self.probe.call(Trigger, f'/train_node/{service}', Trigger.Request(), timeout=30)

    def done(self) -> bool:
        return bool(self.iterations) and self.iterations[-1].data >= ITERATIONS

    # ----------------------------------------------------------------------------- rules
    # An ONNX export takes ~1.5 s (verified against torch), so it is one choice in twelve.
    @rule(action=st.sampled_from(['save'] * 4 + ['pause', 'resume'] + ['read_only'] * 2
                                 + ['wait'] * 3 + ['export']),
          seconds=st.floats(0.0, 0.2),
          name=st.sampled_from(['total_steps', 'n_steps', 'run_dir', 'env']))
    def operator(self, action: str, seconds: float, name: str) -> None:
        if action == 'save':
            response = self.trigger('save_checkpoint')
            assert response.success, response.message
            load_checkpoint(response.message)  # a whole checkpoint, whatever the phase
        elif action == 'export':
            response = self.trigger('export_policy')
            assert response.success, response.message
            assert Policy.load(response.message).joint_names
        elif action in ('pause', 'resume'):
            self.pause(action == 'pause')
        elif action == 'read_only':
            value = 5 if name in ('total_steps', 'n_steps') else 'elsewhere'
            (result,) = self.probe.set_parameters('train_node', **{name: value})
            assert not result.successful
        else:
            time.sleep(seconds)

    def iteration_period(self) -> float:
        """Return the mean time between iterations so far (s), pauses included."""
        with self.probe.lock:
            n = len(self.iterations)
        return (time.monotonic() - self.first_iteration) / max(1, n - 1)

    def pause(self, pause: bool) -> None:
        request = SetBool.Request()
        request.data = pause
        response = self.probe.call(SetBool, '/train_node/pause', request)
        assert response.success, response.message
        if self.done():
            return
        if pause:
            with self.probe.lock:
                at_pause = len(self.iterations)
            # The running iteration may end (at most one more), then none: wait for a quiet
            # window of 3 iteration periods (measured, so a loaded machine does not fail it).
            quiet = min(3.0, max(0.5, 3 * self.iteration_period()))
            count, changed, deadline = at_pause, time.monotonic(), time.monotonic() + 30
            while time.monotonic() - changed < quiet and time.monotonic() < deadline:
                with self.probe.lock:
                    now_count = len(self.iterations)
                if now_count != count:
                    count, changed = now_count, time.monotonic()
                time.sleep(0.02)
            assert count <= at_pause + 1 and time.monotonic() < deadline, \
                f'iterations went on while paused ({at_pause} -> {count})'
        else:
            with self.probe.lock:
                count = len(self.iterations)
            self.probe.wait_for(lambda: len(self.iterations) > count or self.done(),
                                timeout=10)

    # ------------------------------------------------------------------------ invariants
    @invariant()
    def alive(self) -> None:
        steps_run[0] += 1
        assert self.proc.alive(), self.proc.log()[-3000:]


def test_train_node_services_in_every_phase():
    run_stateful(TrainMachine, EXAMPLES, STEPS, steps_run)
