"""SafeLog and Guard: logging that never raises, callbacks that never end a node."""

from __future__ import annotations

import pytest
from rclpy.impl.rcutils_logger import RcutilsLogger
from rclpy.logging import LoggingSeverity
from std_srvs.srv import Trigger
from trpo_ros.nodes.guard import Guard, SafeLog

pytestmark = pytest.mark.unit


def hold(log: SafeLog, level: LoggingSeverity, reason: str) -> None:
    log.log(level, f'holding: {reason}')  # one call site, two severities (issue 14's crash)


def test_one_call_site_logs_at_any_severity_with_any_throttle():
    plain = RcutilsLogger(name='trpo_guard_test')

    def plain_hold(level: LoggingSeverity) -> None:
        plain.log('holding', level)

    plain_hold(LoggingSeverity.WARN)
    with pytest.raises(ValueError, match='severity cannot be changed'):
        plain_hold(LoggingSeverity.ERROR)  # what rclpy does on its own
    log = SafeLog(RcutilsLogger(name='trpo_guard_test'))
    for level in (LoggingSeverity.WARN, LoggingSeverity.ERROR, LoggingSeverity.INFO) * 2:
        hold(log, level, 'waiting for a goal')
    for throttle in (0.0, 1.0, 0.5):
        log.error('flood', throttle_sec=throttle)


def test_throttle_per_key_and_bounded():
    log = SafeLog(RcutilsLogger(name='trpo_guard_test'))
    assert log._due('a', 10.0) and not log._due('a', 10.0) and log._due('b', 10.0)
    for k in range(1000):
        log._due(f'key{k}', 10.0)
    assert len(log._last) <= 256


def test_guard_contains_counts_and_reports():
    guard = Guard(SafeLog(RcutilsLogger(name='trpo_guard_test')))

    def boom(*_args):
        raise RuntimeError('bad callback')

    assert guard.wrap('timer', boom)() is None
    assert guard.wrap('params', boom, lambda why, args: ('failed', why))(1) == (
        'failed', 'params: RuntimeError: bad callback')
    assert guard.wrap('twice', boom, boom)() is None  # a failing fallback is contained too
    response = guard.service('save', boom)(Trigger.Request(), Trigger.Response())
    assert not response.success and 'bad callback' in response.message
    assert guard.errors == 5
    recent = guard.take_recent()
    assert set(recent) == {'timer', 'params', 'twice', 'twice (fallback)', 'save'}
    assert guard.take_recent() == {}
    assert guard.wrap('ok', lambda x: x + 1)(1) == 2
