"""Storage URLs carry passwords: keep them out of files, logs and command lines.

Where a storage URL goes:

- ``sweep.json``, ``summary.json``, the report, the study's own record of the
  sweep settings, log lines, error messages and the progress line show it masked
  (``postgresql://user:***@host/db``, :func:`mask_url`);
- worker processes get it in the environment variable :data:`STORAGE_ENV`
  (readable only by the same user, unlike the command line, which ``ps`` shows
  to everyone), or from a file given with ``--storage-file`` that only its owner
  can read.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path

STORAGE_ENV = "NCP_SEARCH_STORAGE"
"""The environment variable that passes a storage URL to workers (and to the CLI)."""

MASK = "***"
_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^/\s:@]*:)(?P<secret>[^@/\s]+)@")
_QUERY = re.compile(r"(?P<head>[?&](?:password|passwd|pwd|secret|token)=)(?P<secret>[^&\s]+)",
                    re.IGNORECASE)


def mask_url(text: str | None) -> str | None:
    """``text`` with the passwords of any URLs in it replaced by ``***``.

    Example:
        >>> mask_url("postgresql://ncp:s3cret@db:5432/ncp?sslmode=require")
        'postgresql://ncp:***@db:5432/ncp?sslmode=require'
    """
    if text is None:
        return None
    text = _USERINFO.sub(lambda m: m.group("head") + MASK + "@", str(text))
    return _QUERY.sub(lambda m: m.group("head") + MASK, text)


def secrets_of(url: str | None) -> list[str]:
    """The secret parts of ``url`` (its password and secret query values)."""
    if not url:
        return []
    found = [m.group("secret") for m in _USERINFO.finditer(url)]
    found += [m.group("secret") for m in _QUERY.finditer(url)]
    # Also their percent-decoded forms, which drivers may print.
    from urllib.parse import unquote

    found += [unquote(s) for s in found if unquote(s) != s]
    return [s for s in found if len(s) >= 1]


def hide(text: str, secrets: list[str]) -> str:
    """``text`` with every secret in ``secrets`` replaced by ``***``, then masked."""
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return mask_url(text) or ""


class _MaskFilter(logging.Filter):
    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        hidden = hide(message, self.secrets)
        if hidden != message:
            record.msg, record.args = hidden, None
        return True


@contextlib.contextmanager
def masked_logs(url: str | None) -> Iterator[None]:
    """While active, log records that pass the root logger's handlers have ``url``'s
    password masked (a filter on each handler, removed afterwards)."""
    secrets = secrets_of(url)
    if not secrets:
        yield
        return
    mask = _MaskFilter(secrets)
    handlers = list(logging.getLogger().handlers)
    for handler in handlers:
        handler.addFilter(mask)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(mask)


def read_storage_file(path: str | os.PathLike[str]) -> str:
    """The storage URL in ``path`` (first non-empty line); the file must not be
    readable by group or others.

    Raises:
        PermissionError: if group or others may read the file (chmod 600 it).
        ValueError: if the file holds no URL.
    """
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise PermissionError(f"{path} holds a storage URL but others may read it (mode "
                              f"{mode:o}); run chmod 600 {path}.")
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            return line.strip()
    raise ValueError(f"{path} holds no storage URL; write it on the first line.")
