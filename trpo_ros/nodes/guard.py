"""
Keep a robot-facing node alive: logging that never raises, callbacks that contain errors.

rclpy remembers the severity of each logging call site and raises ``ValueError: Logger
severity cannot be changed between calls`` when one site logs at two levels; the same happens
for a changed throttle. :class:`SafeLog` keeps one rclpy logger object per severity (each with
its own call-site cache), throttles by key itself, and falls back to stderr, so logging can
never raise. :class:`Guard` runs timer, subscription, service, parameter and lifecycle
callbacks so that an exception is logged, counted and kept for /diagnostics instead of ending
the executor (and with it the node).
"""

from __future__ import annotations

from collections.abc import Callable
import sys
import time
from typing import Any

from rclpy.impl.rcutils_logger import RcutilsLogger
from rclpy.logging import LoggingSeverity

_THROTTLE_KEYS = 256  # forget throttle keys beyond this many (bounded memory under floods)


class SafeLog:
    """Node logging that never raises; `throttle_sec` limits one `key` to one line per period."""

    def __init__(self, logger: RcutilsLogger) -> None:
        self.name = logger.name
        # One logger object per severity: rclpy's per-call-site cache lives in the object.
        self._loggers = {level: RcutilsLogger(name=logger.name) for level in (
            LoggingSeverity.INFO, LoggingSeverity.WARN, LoggingSeverity.ERROR)}
        self._last: dict[str, float] = {}

    def info(self, message: str, throttle_sec: float = 0.0, key: str = '') -> None:
        """Log at INFO."""
        self.log(LoggingSeverity.INFO, message, throttle_sec, key)

    def warning(self, message: str, throttle_sec: float = 0.0, key: str = '') -> None:
        """Log at WARN."""
        self.log(LoggingSeverity.WARN, message, throttle_sec, key)

    def error(self, message: str, throttle_sec: float = 0.0, key: str = '') -> None:
        """Log at ERROR."""
        self.log(LoggingSeverity.ERROR, message, throttle_sec, key)

    def log(self, level: LoggingSeverity, message: str, throttle_sec: float = 0.0,
            key: str = '') -> None:
        """Log `message` at `level` unless `key` (default: the message) was logged recently."""
        try:
            if throttle_sec > 0 and not self._due(key or message, throttle_sec):
                return
            self._loggers[level].log(message, level)
        except Exception:  # noqa: BLE001 - logging must never end a node
            try:
                sys.stderr.write(f'[{level.name}] [{self.name}]: {message}\n')
            except Exception:  # noqa: BLE001 - nothing left to report to
                pass

    def _due(self, key: str, period: float) -> bool:
        now = time.monotonic()
        if now - self._last.get(key, -1e18) < period:
            return False
        if len(self._last) >= _THROTTLE_KEYS:
            self._last.clear()
        self._last[key] = now
        return True


class Guard:
    """
    Contains exceptions of a node's callbacks: logs (throttled), counts and remembers them.

    `errors` counts every contained exception since start; :meth:`take_recent` returns (and
    forgets) the ones since the last call, for the node's /diagnostics message.
    """

    def __init__(self, log: SafeLog) -> None:
        self.log = log
        self.errors = 0
        self.last_error = ''
        self._recent: dict[str, str] = {}

    def record(self, where: str, exc: BaseException) -> str:
        """Count and log one contained exception; returns its one-line description."""
        text = f'{where}: {type(exc).__name__}: {str(exc)[:300]}'
        self.errors += 1
        self.last_error = text
        if len(self._recent) < 8:
            self._recent.setdefault(where, text)
        self.log.error(f'contained {text}', throttle_sec=1.0, key=where)
        return text

    def take_recent(self) -> dict[str, str]:
        """Contained exceptions since the last call: {where: description}."""
        recent, self._recent = self._recent, {}
        return recent

    def wrap(self, where: str, callback: Callable[..., Any],
             fallback: Callable[[str, tuple], Any] | None = None) -> Callable[..., Any]:
        """
        Return `callback` guarded: an exception is recorded and `fallback` gives the result.

        `fallback(description, args)` builds the value the caller needs instead (a service
        response, a SetParametersResult, a lifecycle return code); None returns None.
        """
        def guarded(*args: Any) -> Any:
            try:
                return callback(*args)
            except Exception as exc:  # noqa: BLE001 - contained, counted, reported
                text = self.record(where, exc)
            if fallback is None:
                return None
            try:
                return fallback(text, args)
            except Exception as exc:  # noqa: BLE001 - the fallback failed too
                self.record(f'{where} (fallback)', exc)
                return None

        guarded.__name__ = getattr(callback, '__name__', where)
        return guarded

    def service(self, where: str, callback: Callable[[Any, Any], Any]) -> Callable[..., Any]:
        """Guard a service callback: on an exception the reply says success=False and why."""
        def failed(text: str, args: tuple) -> Any:
            response = args[1]
            if hasattr(response, 'success'):
                response.success = False
            if hasattr(response, 'message'):
                response.message = text
            return response

        return self.wrap(where, callback, failed)
