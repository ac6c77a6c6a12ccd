"""Ray Tune adapters: NCPScheduler, NCPTuneCallback, trainables and Keras checkpoints.

Names are resolved on first use (PEP 562), so importing one module of this package
(e.g. the scheduler) imports neither Keras nor TensorFlow.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "NCPScheduler": "ncp_search.integrations.ray.scheduler",
    "NoCheckpointError": "ncp_search.integrations.ray.pausing",
    "NCPTuneCallback": "ncp_search.integrations.ray.callback",
    "keras_checkpoint": "ncp_search.integrations.ray.checkpoint",
    "restore_keras": "ncp_search.integrations.ray.checkpoint",
    "kept_model": "ncp_search.integrations.ray.checkpoint",
    "KerasProbeTrainable": "ncp_search.integrations.ray.trainable",
    "report_beta_eff_to_tune": "ncp_search.integrations.ray.trainable",
    "trial_resources": "ncp_search.integrations.ray.trainable",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
