"""Fixtures shared across the test suite.

Plain helpers live in modules beside the tests (``tests/engine/models.py``,
``tests/integrations/tune_fakes.py``, ``tests/synthetic_runs.py``, ``tests/reference.py``);
no test module imports another test module.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

# Ray starts its workers at nice 15: on a busy machine (other jobs at normal priority)
# the Ray tests' trials then get a few percent of a core and time out. The tests, and the
# examples and sweeps they start in subprocesses, run Ray's workers at normal priority,
# as a local ncp-search sweep does (ncp_search.app.sweep.ray_backend.WORKER_NICENESS_ENV).
os.environ.setdefault("RAY_worker_niceness", "0")


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


@pytest.fixture
def meter_calls(monkeypatch):
    """Counts probe attachments and beta_eff measurements of the callbacks."""
    import ncp_search.engine.callbacks as callbacks

    calls = {"probe_for": 0, "measure": 0}
    real_probe_for, real_meter = callbacks.probe_for, callbacks.BetaEffMeter

    def probe_for(*args, **kwargs):
        calls["probe_for"] += 1
        return real_probe_for(*args, **kwargs)

    class CountingMeter(real_meter):
        def __call__(self, *args, **kwargs):
            calls["measure"] += 1
            return super().__call__(*args, **kwargs)

    monkeypatch.setattr(callbacks, "probe_for", probe_for)
    monkeypatch.setattr(callbacks, "BetaEffMeter", CountingMeter)
    return calls
