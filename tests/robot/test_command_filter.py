"""The one command filter: known answers per stage and a property test of the bounds."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
import numpy as np
import pytest
from trpo_ros.robot import CommandFilter

pytestmark = pytest.mark.unit

LOW, HIGH = np.array([-1.0, -2.0]), np.array([1.0, 2.0])


def test_each_stage_known_answers():
    bounds = CommandFilter(LOW, HIGH)
    assert np.array_equal(bounds([5.0, -5.0]).command, [1.0, -2.0])
    capped = CommandFilter(LOW, HIGH, max_step=np.array([0.1, 0.1]))
    result = capped([0.5, 0.0], measured=np.array([0.0, 0.0]))
    assert np.allclose(result.command, [0.1, 0.0]) and result.velocity_capped
    delta = CommandFilter(LOW, HIGH, max_delta=0.2)
    assert np.array_equal(delta([0.0, 0.0]).command, [0.0, 0.0])  # first: bounds only
    result = delta([1.0, -1.0])
    assert np.allclose(result.command, [0.2, -0.2]) and result.delta_limited
    delta.reset()
    assert np.array_equal(delta([1.0, -1.0]).command, [1.0, -1.0])
    box = np.array([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])

    def fk(q):
        return np.array([q[0], q[1], 0.5])

    workspace = CommandFilter(LOW, HIGH, workspace=box, fk=fk)
    inside = np.array([0.5, 0.5])
    assert np.array_equal(workspace([0.9, 0.5], inside).command, [0.9, 0.5])
    result = workspace([-0.5, 0.5], inside)  # leaves the box: hold the measured pose
    assert result.workspace_hold and np.array_equal(result.command, inside)
    outside = np.array([-0.8, 0.5])
    result = workspace([-0.4, 0.5], outside)  # back towards the box: allowed
    assert not result.workspace_hold and np.array_equal(result.command, [-0.4, 0.5])
    with pytest.raises(ValueError):
        CommandFilter(HIGH, LOW)
    with pytest.raises(ValueError):
        CommandFilter(LOW, HIGH, workspace=box)  # no fk


vectors = st.lists(st.floats(-10, 10), min_size=2, max_size=2).map(np.array)


@settings(max_examples=200, deadline=None)
@given(commands=st.lists(vectors, min_size=1, max_size=20), measured=vectors,
       max_delta=st.sampled_from([0.0, 0.01, 0.3]), step=st.sampled_from([None, 0.05, 0.5]))
def test_every_output_within_bounds_cap_and_delta(commands, measured, max_delta, step):
    measured = np.clip(measured, LOW, HIGH)
    max_step = None if step is None else np.full(2, step)
    command_filter = CommandFilter(LOW, HIGH, max_delta=max_delta, max_step=max_step)
    previous = None
    for command in commands:
        out = command_filter(command, measured).command
        assert np.all(out >= LOW - 1e-12) and np.all(out <= HIGH + 1e-12)
        if max_delta > 0 and previous is not None:
            assert np.all(np.abs(out - previous) <= max_delta + 1e-12)
        elif max_step is not None:
            assert np.all(np.abs(out - measured) <= step + 1e-12)
        previous = out
