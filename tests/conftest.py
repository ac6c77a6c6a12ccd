"""Fixtures shared across the test suite.

Plain helpers live in modules beside the tests (``tests/engine/models.py``,
``tests/integrations/tune_fakes.py``, ``tests/synthetic_runs.py``, ``tests/reference.py``);
no test module imports another test module.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="module")
def ray_session() -> Iterator[None]:
    """A local Ray instance (2 CPUs, no dashboard) for the tests of one module.

    Tests that use it start real Ray processes: mark them ``@pytest.mark.slow``.
    """
    ray = pytest.importorskip("ray", reason="optional dependency: pip install 'ncp-search[ray]'")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()
