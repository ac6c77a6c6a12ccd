"""A sweep's output folder describes itself: ``sweep.json`` (checked, never trusted),
paths stored relative to the folder, and an identity shared with the study.

Paths: the embedded SQLite storage (``study.db``) and the Ray experiment (``ray/``)
are recorded in ``sweep.json`` relative to the folder and resolved against the
folder where it is now, so a moved or copied folder reads its own study and its
own scheduler journal. A storage outside the folder (PostgreSQL, a SQLite file or
Ray storage elsewhere) is recorded as given (absolute). An older ``sweep.json``
holding an absolute path to another folder's ``study.db`` is read as this
folder's ``study.db`` when the folder holds one (a folder moved before paths
were relative).

Identity: ``sweep.json`` holds ``id``, a creation id (a random UUID) made when
the sweep starts; the same id is stored in the Optuna study (user attribute
:data:`ID_ATTR`) and in the Ray experiment folder (:data:`RAY_ID_FILE`).
``report``, ``--resume`` and a new sweep check it before touching anything, and
refuse a folder whose storage holds another sweep (:class:`IdentityError`).

Symlinks: nothing the sweep writes inside its folder may be a symbolic link
(:func:`refuse_symlinks`), so a planted link cannot redirect a write out of it.
"""

from __future__ import annotations

import json
import math
import os
import re
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ncp_search.errors import NCPSearchError

META_FILE = "sweep.json"
ID_ATTR = "ncp_sweep_id"
"""Optuna study user attribute: the creation id of the sweep that owns the study."""
RAY_ID_FILE = "ncp_sweep_id.json"
"""File in the Ray experiment folder: ``{"id", "name"}`` of the sweep that owns it."""
EMBEDDED_DB = "study.db"
WRITTEN = ("sweep.json", "summary.json", "report.html", "report", "trials.jsonl", "models",
           ".budget.lock", EMBEDDED_DB, "ncp_scheduler.jsonl", "ray")
"""What a sweep writes directly inside its folder."""
BACKENDS = ("optuna", "ray")
_SQLITE = re.compile(r"^(?P<scheme>sqlite(?:\+\w+)?):///(?P<path>.*)$")
_FIX = ("ncp-search writes it atomically, so something else changed it; restore it from a "
        "copy, or start the sweep in another output folder.")


class IdentityError(NCPSearchError):
    """A sweep folder and the storage it names belong to different sweeps."""


def new_id() -> str:
    """A fresh creation id."""
    return uuid.uuid4().hex


# -- sweep.json -------------------------------------------------------------------------
def _damage(meta: Any) -> str | None:
    """What is wrong with a parsed ``sweep.json`` (None: nothing)."""
    if not isinstance(meta, dict):
        return f"it holds a JSON {type(meta).__name__}, not an object"
    missing = [k for k in ("name", "backend", "epochs", "config") if k not in meta]
    if not missing and meta["backend"] == "optuna":
        missing = [k for k in ("storage", "study_name") if k not in meta]
    if missing:
        return f"it lacks {missing}"
    checks = [
        ("name", isinstance(meta["name"], str) and bool(meta["name"]), "a non-empty string"),
        ("backend", meta["backend"] in BACKENDS, f"one of {list(BACKENDS)}"),
        ("epochs", type(meta["epochs"]) is int and meta["epochs"] >= 1, "an integer >= 1"),
        ("config", isinstance(meta["config"], dict)
         and isinstance(meta["config"].get("budget", {}), dict), "an object"),
        ("storage", meta.get("storage") is None or isinstance(meta["storage"], str),
         "a string or null"),
        ("study_name", meta.get("study_name") is None or isinstance(meta["study_name"], str),
         "a string"),
        ("id", meta.get("id") is None or (isinstance(meta["id"], str)
                                          and 0 < len(meta["id"]) <= 64), "a short string"),
        ("resumed", isinstance(meta.get("resumed", []), list), "a list"),
        ("warnings", isinstance(meta.get("warnings") or [], list), "a list"),
        ("num_classes", meta.get("num_classes") is None or (
            type(meta["num_classes"]) is int and meta["num_classes"] >= 1), "an integer >= 1"),
    ]
    bad = [f"{key} is not {what}" for key, ok, what in checks if not ok]
    return "; ".join(bad) or None


def read_meta(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A sweep's ``sweep.json``, checked.

    Raises:
        NCPSearchError: if it cannot be read or is damaged (not JSON, keys missing or
            of the wrong type, a symbolic link).
    """
    path = Path(path)
    if path.is_symlink():
        raise NCPSearchError(f"{path} is a symbolic link; a sweep folder's files must be "
                             "plain files: replace it with the file itself.")
    try:
        text = path.read_bytes().decode("utf-8")
        meta = json.loads(text, parse_constant=lambda name: math.nan)
    except json.JSONDecodeError as error:
        raise NCPSearchError(f"{path} is damaged: not JSON ({error.msg} at line "
                             f"{error.lineno}); {_FIX}") from None
    except (UnicodeDecodeError, RecursionError):
        raise NCPSearchError(f"{path} is damaged: not readable JSON text; {_FIX}") from None
    damage = _damage(meta)
    if damage:
        raise NCPSearchError(f"{path} is damaged: {damage}; {_FIX}")
    return meta


PAUSE_SETTINGS = "pause_settings"
"""``sweep.json`` key: an ``ncp_pause`` sweep's rung settings, recorded when it starts
(``reduction_factor``, ``keep_min``, ``keep_ties``)."""
LEGACY_PAUSE = {"reduction_factor": 2, "keep_ties": False}
"""The rungs of an ``ncp_pause`` sweep whose ``sweep.json`` does not record them: every
such sweep ran reduction factor 2, ties chosen by the bracket order."""


def pause_rungs(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """The reduction factor and tie rule an ``ncp_pause`` sweep in ``folder`` runs
    with: as recorded in its ``sweep.json``, :data:`LEGACY_PAUSE` for a ``sweep.json``
    that records none (an older sweep being resumed keeps its rungs), ``{}`` (the
    defaults) with no ``sweep.json``."""
    path = Path(folder) / META_FILE
    if not path.is_file():
        return {}
    recorded = read_meta(path).get(PAUSE_SETTINGS)
    if not isinstance(recorded, Mapping):
        return dict(LEGACY_PAUSE)
    return {key: recorded[key] for key in LEGACY_PAUSE if key in recorded}


# -- paths relative to the folder --------------------------------------------------------
def _inside(path: Path, folder: Path) -> str | None:
    try:
        return path.resolve().relative_to(folder.resolve()).as_posix()
    except ValueError:
        return None


def record_storage(url: str | None, folder: str | os.PathLike[str]) -> str | None:
    """How ``sweep.json`` records an Optuna storage URL: a SQLite file inside the
    folder relative to it (``sqlite:///study.db``), another SQLite file absolute,
    any other URL as given (the caller masks its password)."""
    match = _SQLITE.match(url or "")
    if match is None or match["path"] in ("", ":memory:"):
        return url
    inside = _inside(Path(match["path"]), Path(folder))
    path = inside if inside is not None else str(Path(match["path"]).resolve())
    return f"{match['scheme']}:///{path}"


def resolve_storage(stored: str, folder: str | os.PathLike[str]) -> str:
    """The storage URL ``sweep.json`` records (:func:`record_storage`), for the folder
    where it is now: a relative SQLite path is resolved against ``folder``; an old
    absolute path to another folder's ``study.db`` is this folder's ``study.db``
    when it has one (the folder was moved)."""
    match = _SQLITE.match(stored)
    if match is None or match["path"] in ("", ":memory:"):
        return stored
    here = Path(folder).resolve()
    path = Path(match["path"])
    if not path.is_absolute():
        path = here / path
    elif (path.name == EMBEDDED_DB and path.parent != here
          and (here / EMBEDDED_DB).is_file()):
        path = here / EMBEDDED_DB
    return f"{match['scheme']}:///{path}"


def record_ray_storage(storage: str | None, folder: str | os.PathLike[str]) -> str | None:
    """How ``sweep.json`` records Tune's storage path: None for the default
    (``<folder>/ray``), a path inside the folder relative to it, others absolute."""
    if storage is None or "://" in storage:
        return storage
    inside = _inside(Path(storage), Path(folder))
    if inside == "ray":
        return None
    return inside if inside is not None else str(Path(storage).resolve())


def resolve_ray_storage(stored: str | None, folder: str | os.PathLike[str]) -> str:
    """Tune's storage path for the folder where it is now."""
    here = Path(folder).resolve()
    if stored is None:
        return str(here / "ray")
    if "://" in stored or Path(stored).is_absolute():
        return stored
    return str(here / stored)


# -- identity --------------------------------------------------------------------------
def _mismatch(folder: Path, meta: Mapping[str, Any], where: str, found: str | None) -> str:
    return (f"{folder} does not hold the sweep {where} belongs to: sweep.json says sweep id "
            f"{meta.get('id')}, {where} says {found or 'no sweep id'} (the folder was moved or "
            "copied away from its storage, or another sweep reused the name); point at the "
            "sweep's own storage (--storage), or start a new sweep in another output folder.")


def check_study(study: Any, meta: Mapping[str, Any], folder: str | os.PathLike[str]) -> None:
    """Refuse an Optuna study that another sweep owns.

    A study without an id is accepted for a ``sweep.json`` without one (both from
    before sweep ids).

    Raises:
        IdentityError: the ids differ, or ``sweep.json`` has an id and the study none.
    """
    expected = meta.get("id")
    found = study.user_attrs.get(ID_ATTR)
    if expected is None and found is None:
        return
    if found != expected:
        raise IdentityError(_mismatch(Path(folder), meta, f"study {study.study_name!r}",
                                      None if found is None else str(found)[:64]))


def read_ray_id(experiment: str | os.PathLike[str]) -> str | None:
    """The sweep id recorded in a Ray experiment folder (None: none, or unreadable)."""
    path = Path(experiment) / RAY_ID_FILE
    try:
        value = json.loads(path.read_text(encoding="utf-8")).get("id")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def check_ray_experiment(experiment: str | os.PathLike[str], meta: Mapping[str, Any],
                         folder: str | os.PathLike[str]) -> None:
    """Refuse a Ray experiment folder that another sweep owns (one without an id is
    accepted: from before sweep ids).

    Raises:
        IdentityError: the experiment records another sweep id.
    """
    found = read_ray_id(experiment)
    if found is not None and found != meta.get("id"):
        raise IdentityError(_mismatch(Path(folder), meta, f"the Ray experiment {experiment}",
                                      found[:64]))


def write_ray_id(experiment: str | os.PathLike[str], meta: Mapping[str, Any]) -> None:
    """Record the sweep's id in its Ray experiment folder."""
    from ncp_search.app.jsonio import write_json

    path = Path(experiment) / RAY_ID_FILE
    if path.is_symlink():
        raise NCPSearchError(f"{path} is a symbolic link; remove it.")
    write_json({"id": meta["id"], "name": meta["name"]}, path)


TUNER_PICKLE = "tuner.pkl"
TUNER_DIGEST = "tuner_sha256"
"""``sweep.json`` key: the SHA-256 of the ``tuner.pkl`` Tune wrote when the sweep
started (Tune writes it once; ``Tuner.restore`` unpickles it, which runs code)."""


def tuner_digest(experiment: str | os.PathLike[str]) -> str | None:
    """The SHA-256 of a Ray experiment's ``tuner.pkl`` (None: there is none)."""
    import hashlib

    path = Path(experiment) / TUNER_PICKLE
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return None


def check_tuner_pickle(experiment: str | os.PathLike[str], meta: Mapping[str, Any]) -> None:
    """Refuse to restore a Ray experiment whose ``tuner.pkl`` is not the one the sweep
    wrote (``sweep.json``'s :data:`TUNER_DIGEST`; a sweep from before the digest is
    not checked): Tune unpickles it, and a planted pickle runs code.

    Raises:
        NCPSearchError: the digests differ, or the pickle is a symbolic link.
    """
    path = Path(experiment) / TUNER_PICKLE
    if path.is_symlink():
        raise NCPSearchError(f"{path} is a symbolic link; Tune would unpickle what it points "
                             "to: remove it.")
    expected = meta.get(TUNER_DIGEST)
    if expected is None:
        return
    found = tuner_digest(experiment)
    if found != expected:
        raise NCPSearchError(
            f"{path} is not the file this sweep wrote (SHA-256 {str(found)[:12]}..., "
            f"sweep.json records {str(expected)[:12]}...); resuming would unpickle it, "
            "which runs any code in it: restore the sweep folder from a trusted copy, or "
            "start a new sweep in another output folder.")


# -- symlinks ----------------------------------------------------------------------------
def refuse_symlinks(folder: str | os.PathLike[str], names: Iterable[str] = WRITTEN) -> None:
    """Refuse a sweep folder in which something the sweep writes is a symbolic link
    (a planted link would redirect the write out of the folder).

    Raises:
        NCPSearchError: naming the first link found.
    """
    here = Path(folder)
    for name in names:
        path = here / name
        found = [path] if path.is_symlink() else []
        if not found and name == "report" and path.is_dir():
            found = [p for p in path.iterdir() if p.is_symlink()]
        if found:
            raise NCPSearchError(
                f"{found[0]} is a symbolic link; ncp-search writes there and does not follow "
                "links out of a sweep folder: remove the link (or use another output folder).")
