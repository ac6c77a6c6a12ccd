"""Exception types of ncp_search.

Bad arguments raise the built-in types (``ValueError``, ``TypeError``); everything
else the package raises derives from :class:`NCPSearchError`.
"""

from __future__ import annotations


class NCPSearchError(Exception):
    """Base class of the errors ncp_search raises for reasons other than bad arguments."""


class ProbeError(NCPSearchError, ValueError):
    """A model cannot take a probe, or a model carries no probe where one is needed."""


class DataError(NCPSearchError):
    """A data set cannot be found or read."""
