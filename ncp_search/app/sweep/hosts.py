"""Processes on this host: how a worker or driver names itself in the records it owns,
and whether it is alive."""

from __future__ import annotations

import os
import socket


def this_process() -> str:
    """This process as the sweeps' records name their worker or driver: ``<host>:<pid>``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (one we may not signal counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
