"""Seeds of a sweep: any non-negative integer in the config, reduced into the range
the seeded libraries accept.

NumPy's legacy ``RandomState`` (which Optuna's samplers, scikit-learn's splits and
``keras.utils.set_random_seed`` use) takes seeds in ``[0, 2**32 - 1]``. A sweep
derives several seeds from its one ``seed`` (per worker, per start of a resumed
sweep, per trial); each derived value is reduced modulo ``2**32``, so every
non-negative ``seed`` works and seeds below the old limits give the values they
always gave.
"""

from __future__ import annotations

SEED_RANGE = 2**32
"""Seeds are reduced into ``[0, SEED_RANGE - 1]``."""


def reduce_seed(value: int) -> int:
    """``value`` (any integer) as a seed in ``[0, 2**32 - 1]``."""
    return int(value) % SEED_RANGE


def sampler_seed(seed: int, worker: int, existing: int) -> int:
    """The Optuna sampler seed of ``worker`` starting on a study that already holds
    ``existing`` trials (a resumed sweep must not draw its first configurations
    again)."""
    return reduce_seed((int(seed) * 1000 + int(worker)) * 100_003 + int(existing))


def trial_seed(seed: int, number: int) -> int:
    """The seed of a trial's weights and data order."""
    return reduce_seed(int(seed) * 100_003 + int(number))
