"""Test setup: keep ROS 2 discovery on loopback and give every test its own DDS domain."""

import itertools
import os

# Must be set before any rclpy context exists: only loopback traffic is allowed here.
os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
os.environ.setdefault('RCUTILS_LOGGING_BUFFERED_STREAM', '1')
os.environ.setdefault('OMP_NUM_THREADS', '1')

import pytest  # noqa: E402

# Domain ids 1..100 per pytest process; xdist-free, so a simple counter is unique enough.
_domain_ids = itertools.count(start=(os.getpid() % 50) * 2 + 1)


@pytest.fixture(autouse=True)
def ros_domain_id(monkeypatch: pytest.MonkeyPatch) -> int:
    """Give each test its own ROS_DOMAIN_ID (inherited by the subprocesses it starts)."""
    domain = next(_domain_ids) % 200 + 1
    monkeypatch.setenv('ROS_DOMAIN_ID', str(domain))
    return domain


TIERS = ('unit', 'integration', 'learning')


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test belongs to a tier (README: unit, integration, learning)."""
    untiered = [item.nodeid for item in items
                if not any(item.get_closest_marker(tier) for tier in TIERS)]
    if untiered:
        raise pytest.UsageError('tests without a tier marker (unit/integration/learning): '
                                + ', '.join(untiered[:5]))
