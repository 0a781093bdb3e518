"""
Run the ament linters the way a ROS 2 package's standard tests do.

Same checks as ament_flake8 / ament_pep257 in `colcon test`; `ruff check .` (configured
in pyproject.toml to agree with them) gives the quick feedback.
"""

from pathlib import Path

from ament_flake8.main import main_with_errors
from ament_pep257.main import main
import pytest

ROOT = Path(__file__).resolve().parent.parent
PATHS = [str(ROOT / name) for name in ('trpo_ros', 'tests', 'launch', 'bench', 'setup.py')]


@pytest.mark.unit
def test_flake8():
    rc, errors = main_with_errors(argv=PATHS)
    assert rc == 0, \
        f'Found {len(errors)} code style errors / warnings:\n' + '\n'.join(errors)


@pytest.mark.unit
def test_pep257():
    rc = main(argv=PATHS)
    assert rc == 0, 'Found code style errors / warnings'
