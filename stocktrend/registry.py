"""Model registry: immutable versions on disk, ``champion`` / ``challenger`` aliases in SQL.

Layout (one directory per version, never rewritten once registered)::

    $STOCKTREND_HOME/models/<version>/model.ckpt
    $STOCKTREND_HOME/models/<version>/model_metadata.json

``model_metadata.json`` holds ``checkpoint.sha256`` for ``model.ckpt``, so
:func:`stocktrend.checkpoint.load_checkpoint` refuses a copy that was altered
after registration, plus the registry facts (parent, training period, metrics).
``model_versions.path`` is stored relative to ``STOCKTREND_HOME``, so workers
sharing the database need the same home contents, not the same mount point.

Tables (migration 2, see :mod:`stocktrend.storage.migrations`):

* ``model_versions``: one row per version: sha256, parent version (lineage),
  training period, headline metrics JSON, status, path, and the last decision
  taken about it (why it was promoted, rejected or rolled back) as JSON;
* ``model_aliases``: ``alias -> version`` (MLflow-style aliases), with the version
  it replaced;
* ``model_alias_events``: every alias move (``initial``, ``promote``, ``rollback``,
  ``set``) with its reason: the audit trail, and what :func:`rollback` reads.

**Version names.** A registry version is the checkpoint's own
``stocktrend.model_version``; :func:`register_version` refuses a checkpoint that
calls itself something else. The registered copy is byte-identical to the
source, so scoring through an alias writes prediction rows whose
``model_version`` is the registry version and whose ``model_sha256`` is the
registered file's hash, with no translation table anywhere.

**Crash safety.** Files are written first (temp file, fsync, atomic rename; the
copy's sha256 must equal the source's), the SQL row second. Moving an alias is
one transaction that also updates the statuses and appends the event, and it
happens only after the target's files are verified in place. A crash at any
point therefore leaves the old alias target serving; at worst an unregistered
directory remains, which the next registration of that version overwrites.

**First use.** When no champion exists yet, the bundled pretrained checkpoint
(``pretrained_models/best_model_v2.0.ckpt``, version ``v2.0``) is copied in, its
sha256 checked against ``pretrained_models/model_metadata.json``, registered and
made champion (event ``initial``). Concurrent first uses are safe: inserts are
``ON CONFLICT DO NOTHING`` and only the winner records the event.

Every public function takes the :class:`~stocktrend.config.Settings` to use and
opens (and disposes) its own engine: nothing is cached between calls.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from stocktrend.atomic import atomic_copy, atomic_write_text
from stocktrend.checkpoint import METADATA_FILENAME, file_sha256, load_checkpoint
from stocktrend.config import Settings
from stocktrend.errors import StocktrendError
from stocktrend.storage.engine import upsert_insert
from stocktrend.storage.migrations import migrated_connection
from stocktrend.storage.sql_store import (
    MODEL_STATUSES,
    model_alias_events,
    model_aliases,
    model_versions,
)

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "CHECKPOINT_FILENAME",
    "PRETRAINED_CHECKPOINT",
    "AliasChange",
    "ModelVersion",
    "RegistryError",
    "alias_history",
    "aliases",
    "ensure_initial_champion",
    "get_version",
    "list_versions",
    "models_dir",
    "promote",
    "record_decision",
    "register_version",
    "resolve_alias",
    "rollback",
    "set_alias",
]

CHAMPION = "champion"
CHALLENGER = "challenger"
CHECKPOINT_FILENAME = "model.ckpt"
PRETRAINED_CHECKPOINT = Path("pretrained_models") / "best_model_v2.0.ckpt"
"""Relative to :data:`stocktrend.models.PROJECT_ROOT`; the first champion."""

_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")


class RegistryError(StocktrendError):
    """A registry operation that cannot be done as asked (unknown version, nothing to roll
    back to, a version name reused for different bytes, files that fail verification)."""


@dataclass(frozen=True)
class ModelVersion:
    """One registered version, as ``model_versions`` records it, plus its current aliases."""

    version: str
    sha256: str
    parent_version: str | None
    created_at: datetime
    updated_at: datetime
    train_start: date | None
    train_end: date | None
    metrics: dict[str, Any]
    status: str
    path: Path
    decision: dict[str, Any] | None
    aliases: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types, for artifacts and the CLI."""
        return {
            "version": self.version,
            "sha256": self.sha256,
            "parent_version": self.parent_version,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "train_start": None if self.train_start is None else self.train_start.isoformat(),
            "train_end": None if self.train_end is None else self.train_end.isoformat(),
            "metrics": self.metrics,
            "status": self.status,
            "path": str(self.path),
            "decision": self.decision,
            "aliases": list(self.aliases),
        }


@dataclass(frozen=True)
class AliasChange:
    """One alias move, as ``model_alias_events`` records it."""

    alias: str
    version: str
    previous_version: str | None
    action: str
    reason: str | None
    changed_at: datetime


# --------------------------------------------------------------------------- database


def _connect(settings: Settings, action: str, *, write: bool):
    """A migrated connection in one transaction (SQLite: write lock first when writing)."""
    return migrated_connection(settings.resolved_database_url, action, write=write)


def _now() -> datetime:
    return datetime.now(UTC)


# --------------------------------------------------------------------------- files


def models_dir(settings: Settings) -> Path:
    """Where registered versions live: ``$STOCKTREND_HOME/models``."""
    return settings.home / "models"


def _check_version_name(version: str) -> str:
    if not _VERSION_RE.match(version):
        raise RegistryError(
            f"model version {version!r} cannot be registered: use letters, digits, '.', '_', "
            "'+' and '-' (at most 128 characters, starting with a letter or digit)"
        )
    return version


def _install_files(
    source: Path, version: str, sha256: str, document: dict[str, Any], settings: Settings
) -> Path:
    """Copy the checkpoint and write its metadata; the copy must hash to ``sha256``."""
    directory = models_dir(settings) / version
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / CHECKPOINT_FILENAME
    if not (target.is_file() and file_sha256(target) == sha256):
        atomic_copy(source, target)
        copied = file_sha256(target)
        if copied != sha256:
            target.unlink(missing_ok=True)
            raise RegistryError(
                f"copy of {source} into the registry hashes to {copied}, expected {sha256}",
                hint="the source changed while it was copied, or the disk is failing; retry",
            )
    atomic_write_text(directory / METADATA_FILENAME, json.dumps(document, indent=2) + "\n")
    return target


def _verify_files(entry: ModelVersion) -> None:
    """Refuse to point an alias at files that are missing or no longer match their hash."""
    if not entry.path.is_file():
        raise RegistryError(
            f"version {entry.version} is registered but its checkpoint is missing: {entry.path}",
            hint="restore the file or register the version again",
        )
    actual = file_sha256(entry.path)
    if actual != entry.sha256:
        raise RegistryError(
            f"version {entry.version}: {entry.path} hashes to {actual}, registered as "
            f"{entry.sha256}",
            hint="the file was altered after registration; restore it from a backup",
        )


@contextmanager
def _version_lock(settings: Settings, version: str) -> Iterator[None]:
    """Serialise registrations of one version on this host (files and row together).

    Without it, two processes registering different bytes under one new name
    could leave one's file under the other's row. ``flock`` needs a local
    filesystem (or one whose locks work, which NFS ones often do not).
    """
    lock_dir = models_dir(settings) / ".locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / f"{version}.lock", "ab") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


# --------------------------------------------------------------------------- reading rows


def _row_to_version(
    row: Mapping[str, Any], alias_map: Mapping[str, str], home: Path
) -> ModelVersion:
    names = tuple(sorted(a for a, v in alias_map.items() if v == row["version"]))
    stored = Path(row["path"])
    return ModelVersion(
        version=row["version"],
        sha256=row["sha256"],
        parent_version=row["parent_version"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        train_start=row["train_start"],
        train_end=row["train_end"],
        metrics=dict(row["metrics"] or {}),
        status=row["status"],
        path=stored if stored.is_absolute() else home / stored,
        decision=None if row["decision"] is None else dict(row["decision"]),
        aliases=names,
    )


def _alias_map(conn: Connection) -> dict[str, str]:
    rows = conn.execute(sa.select(model_aliases.c.alias, model_aliases.c.version)).all()
    return {alias: version for alias, version in rows}


def _get(conn: Connection, version: str, home: Path) -> ModelVersion | None:
    query = sa.select(model_versions).where(model_versions.c.version == version)
    row = conn.execute(query).mappings().first()
    return None if row is None else _row_to_version(row, _alias_map(conn), home)


def _require(conn: Connection, version: str, home: Path) -> ModelVersion:
    entry = _get(conn, version, home)
    if entry is None:
        known = [r[0] for r in conn.execute(sa.select(model_versions.c.version)).all()]
        raise RegistryError(
            f"no model version {version!r} in the registry",
            hint=f"known versions: {', '.join(sorted(known)) or 'none'}",
        )
    return entry


def _current(conn: Connection, alias: str, *, lock: bool = False) -> str | None:
    query = sa.select(model_aliases.c.version).where(model_aliases.c.alias == alias)
    if lock and conn.dialect.name == "postgresql":
        query = query.with_for_update()
    return conn.execute(query).scalar()


# --------------------------------------------------------------------------- registration


def _training_period(metadata: Mapping[str, Any]) -> tuple[date | None, date | None]:
    """From the checkpoint's ``training`` section: its ``data_period`` or its ``periods``."""
    training = metadata.get("training") or {}
    period = training.get("data_period") or {}
    start = period.get("start") or (training.get("periods") or {}).get("train_start")
    end = period.get("end") or (training.get("periods") or {}).get("train_end")
    return _as_date(start), _as_date(end)


def _as_date(value: Any) -> date | None:
    if value in (None, ""):
        return None
    return date.fromisoformat(str(value)[:10])


def _metadata_document(
    entry: _Registration, period: tuple[date | None, date | None]
) -> dict[str, Any]:
    return {
        "version": entry.version,
        "checkpoint": {
            "file": CHECKPOINT_FILENAME,
            "sha256": entry.sha256,
            "size_bytes": entry.source.stat().st_size,
        },
        "parent_version": entry.parent_version,
        "training_period": {
            "start": None if period[0] is None else period[0].isoformat(),
            "end": None if period[1] is None else period[1].isoformat(),
        },
        "metrics": entry.metrics,
        "registered_from": str(entry.source),
        "registered_at": _now().isoformat(),
    }


@dataclass(frozen=True)
class _Registration:
    """Everything one registration writes, gathered before the version's lock is taken."""

    source: Path
    version: str
    sha256: str
    metadata: Mapping[str, Any]
    parent_version: str | None
    status: str
    metrics: dict[str, Any]
    decision: dict[str, Any] | None


def _register(
    checkpoint: Path,
    settings: Settings,
    *,
    parent_version: str | None,
    status: str,
    metrics: Mapping[str, Any] | None,
    decision: Mapping[str, Any] | None,
    expected_sha256: str | None = None,
) -> ModelVersion:
    if status not in MODEL_STATUSES:
        raise ValueError(f"status {status!r} is not one of {MODEL_STATUSES}")
    source = Path(checkpoint)
    bundle = load_checkpoint(source)  # also checks a model_metadata.json beside it
    sha256 = str(bundle.sha256)  # the hash of the very bytes that were loaded
    if expected_sha256 is not None and sha256 != expected_sha256.lower():
        raise RegistryError(
            f"{source} hashes to {sha256}, but its metadata says {expected_sha256}",
            hint="the checkpoint or its model_metadata.json was changed; restore the pair",
        )
    version = bundle.metadata.get("model_version")
    if not version:
        raise RegistryError(
            f"{source} has no stocktrend section with a model_version, so it cannot be "
            "registered (a seed checkpoint or bare state_dict)",
            hint="re-save it with stocktrend.checkpoint.save_checkpoint",
        )
    entry = _Registration(
        source=source,
        version=_check_version_name(str(version)),
        sha256=sha256,
        metadata=bundle.metadata,
        parent_version=parent_version,
        status=status,
        metrics=dict(metrics if metrics is not None else bundle.metadata.get("metrics") or {}),
        decision=None if decision is None else dict(decision),
    )
    with _version_lock(settings, entry.version):
        return _install_and_record(entry, settings)


def _install_and_record(entry: _Registration, settings: Settings) -> ModelVersion:
    """Files first, then the row; the caller holds the version's lock."""
    with _connect(settings, "read the model registry", write=False) as conn:
        existing = _get(conn, entry.version, settings.home)
    if existing is not None:
        if existing.sha256 != entry.sha256:
            raise RegistryError(
                f"version {entry.version} is already registered with sha256 "
                f"{existing.sha256[:12]}…, and {entry.source} ({entry.sha256[:12]}…) is different",
                hint="versions are immutable: save the new checkpoint under a new model_version",
            )
        return existing
    period = _training_period(entry.metadata)
    document = _metadata_document(entry, period)
    target = _install_files(entry.source, entry.version, entry.sha256, document, settings)
    now = _now()
    row = {
        "version": entry.version,
        "sha256": entry.sha256,
        "parent_version": entry.parent_version,
        "created_at": now,
        "updated_at": now,
        "train_start": period[0],
        "train_end": period[1],
        "metrics": entry.metrics,
        "status": entry.status,
        "path": _stored_path(target, settings.home),
        "decision": entry.decision,
    }
    with _connect(settings, "register a model version", write=True) as conn:
        conn.execute(upsert_insert(conn, model_versions).values(row).on_conflict_do_nothing())
        return _require(conn, entry.version, settings.home)


def _stored_path(target: Path, home: Path) -> str:
    """Relative to ``STOCKTREND_HOME`` when inside it, so a shared home may be mounted anywhere."""
    try:
        return str(target.relative_to(home))
    except ValueError:
        return str(target)


def ensure_initial_champion(settings: Settings) -> None:
    """Register the bundled pretrained model as champion unless a champion already exists."""
    with _connect(settings, "read the model registry", write=False) as conn:
        if _current(conn, CHAMPION) is not None:
            return
    from stocktrend.models import PROJECT_ROOT  # models imports this module lazily, too

    source = PROJECT_ROOT / PRETRAINED_CHECKPOINT
    if not source.is_file():
        raise RegistryError(
            f"the registry is empty and the pretrained model {source} is missing",
            hint="restore pretrained_models/ or register and promote a checkpoint",
        )
    entry = _register(
        source,
        settings,
        parent_version=None,
        status="registered",
        metrics=None,
        decision=None,
        expected_sha256=_published_sha256(source),
    )
    _verify_files(entry)
    now = _now()
    with _connect(settings, "set the first champion", write=True) as conn:
        inserted = conn.execute(
            upsert_insert(conn, model_aliases)
            .values(alias=CHAMPION, version=entry.version, previous_version=None, updated_at=now)
            .on_conflict_do_nothing()
            .returning(model_aliases.c.alias)  # rowcount is not reliable here on psycopg
        ).first()
        if inserted is not None:
            _set_status(conn, entry.version, "champion", {"action": "initial", "at": now})
            _log_event(conn, CHAMPION, entry.version, None, "initial", "first use of the registry")


def _published_sha256(source: Path) -> str | None:
    """The sha256 that ``model_metadata.json`` beside the pretrained checkpoint publishes."""
    meta_path = source.with_name(METADATA_FILENAME)
    try:
        document = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # absent or unreadable: load_checkpoint reports a malformed file itself
    entry = document.get("checkpoint") if isinstance(document, dict) else None
    if not isinstance(entry, dict) or entry.get("file") != source.name or not entry.get("sha256"):
        return None
    return str(entry["sha256"])


def register_version(
    checkpoint: str | os.PathLike[str],
    settings: Settings,
    *,
    parent_version: str | None = None,
    status: str = "registered",
    metrics: Mapping[str, Any] | None = None,
    decision: Mapping[str, Any] | None = None,
) -> ModelVersion:
    """Copy ``checkpoint`` into the registry and record it; returns the registered version.

    The version is the checkpoint's ``model_version``. Registering the same bytes
    again returns the existing entry; other bytes under a registered name are
    refused. ``metrics`` defaults to the checkpoint's own headline metrics.
    No alias moves here: see :func:`promote` and :func:`set_alias`.
    """
    if status not in ("registered", "challenger"):
        raise ValueError("a new version is 'registered' or 'challenger'; promote() makes champions")
    ensure_initial_champion(settings)
    if parent_version is not None:
        get_version(parent_version, settings)
    return _register(
        Path(checkpoint),
        settings,
        parent_version=parent_version,
        status=status,
        metrics=metrics,
        decision=decision,
    )


# --------------------------------------------------------------------------- reads


def get_version(version: str, settings: Settings) -> ModelVersion:
    """One version (``RegistryError`` when unknown)."""
    with _connect(settings, "read the model registry", write=False) as conn:
        return _require(conn, version, settings.home)


def list_versions(settings: Settings) -> list[ModelVersion]:
    """Every registered version, oldest first, with the aliases that point at it."""
    ensure_initial_champion(settings)
    with _connect(settings, "read the model registry", write=False) as conn:
        alias_map = _alias_map(conn)
        query = sa.select(model_versions).order_by(
            model_versions.c.created_at, model_versions.c.version
        )
        rows = conn.execute(query).mappings()
        return [_row_to_version(row, alias_map, settings.home) for row in rows]


def aliases(settings: Settings) -> dict[str, str]:
    """``{alias: version}`` as the registry serves them now."""
    ensure_initial_champion(settings)
    with _connect(settings, "read model aliases", write=False) as conn:
        return _alias_map(conn)


def alias_history(settings: Settings, alias: str = CHAMPION) -> list[AliasChange]:
    """Every move of ``alias``, oldest first."""
    with _connect(settings, "read alias history", write=False) as conn:
        query = (
            sa.select(model_alias_events)
            .where(model_alias_events.c.alias == alias)
            .order_by(model_alias_events.c.id)
        )
        return [
            AliasChange(
                alias=row["alias"],
                version=row["version"],
                previous_version=row["previous_version"],
                action=row["action"],
                reason=row["reason"],
                changed_at=row["changed_at"],
            )
            for row in conn.execute(query).mappings()
        ]


def resolve_alias(alias: str, settings: Settings) -> Path:
    """The checkpoint an alias points at now (the champion is created on first use).

    Callers resolve once at the start of a run and use the path throughout, so
    a promotion during a run never mixes two models in one run; the files of a
    version are never removed, so the path stays valid.
    """
    ensure_initial_champion(settings)
    with _connect(settings, "resolve a model alias", write=False) as conn:
        version = _current(conn, alias)
        if version is None:
            raise RegistryError(
                f"model alias {alias!r} points at no version yet",
                hint="run the fine-tune flow, or `stocktrend models promote VERSION`",
            )
        entry = _require(conn, version, settings.home)
    if not entry.path.is_file():
        raise RegistryError(
            f"alias {alias!r} points at {version}, whose checkpoint is missing: {entry.path}",
            hint="restore the file, or `stocktrend models rollback`",
        )
    return entry.path


# --------------------------------------------------------------------------- alias moves


def _set_status(
    conn: Connection, version: str, status: str, decision: Mapping[str, Any] | None = None
) -> None:
    values: dict[str, Any] = {"status": status, "updated_at": _now()}
    if decision is not None:
        values["decision"] = dict(decision)
    conn.execute(
        sa.update(model_versions).where(model_versions.c.version == version).values(**values)
    )


def _log_event(
    conn: Connection,
    alias: str,
    version: str,
    previous: str | None,
    action: str,
    reason: str | None,
) -> AliasChange:
    change = AliasChange(alias, version, previous, action, reason, _now())
    conn.execute(
        model_alias_events.insert().values(
            alias=alias,
            version=version,
            previous_version=previous,
            action=action,
            reason=reason,
            changed_at=change.changed_at,
        )
    )
    return change


def _move_alias(conn: Connection, alias: str, version: str, expected: str | None) -> None:
    """Point ``alias`` at ``version`` if it still points at ``expected`` (compare-and-set).

    The single statement a promotion or rollback hinges on; until its
    transaction commits, readers keep seeing ``expected``.
    """
    now = _now()
    if expected is None:
        conn.execute(
            upsert_insert(conn, model_aliases).values(
                alias=alias, version=version, previous_version=None, updated_at=now
            )
        )
        return
    result = conn.execute(
        sa.update(model_aliases)
        .where(model_aliases.c.alias == alias, model_aliases.c.version == expected)
        .values(version=version, previous_version=expected, updated_at=now)
    )
    if result.rowcount != 1:
        raise RegistryError(f"alias {alias!r} moved while this change was being made; retry")


def set_alias(
    alias: str, version: str, settings: Settings, *, reason: str | None = None
) -> AliasChange:
    """Point a non-champion alias (e.g. ``challenger``) at ``version``.

    The champion only moves through :func:`promote` and :func:`rollback`, which
    also keep statuses and lineage straight.
    """
    if alias == CHAMPION:
        raise RegistryError("the champion alias moves only through promote or rollback")
    ensure_initial_champion(settings)
    with _connect(settings, "set a model alias", write=True) as conn:
        entry = _require(conn, version, settings.home)
        _verify_files(entry)
        current = _current(conn, alias, lock=True)
        if current == version:
            return AliasChange(alias, version, current, "set", reason, _now())
        _move_alias(conn, alias, version, current)
        if alias == CHALLENGER and entry.status == "registered":
            _set_status(conn, version, "challenger")
        return _log_event(conn, alias, version, current, "set", reason)


def promote(
    version: str,
    settings: Settings,
    *,
    reason: str | None = None,
    decision: Mapping[str, Any] | None = None,
    replacing: str | None = None,
) -> AliasChange:
    """Make ``version`` the champion in one transaction; the old champion becomes ``retired``.

    The version's files are verified (present, sha256 as registered) before
    anything changes. ``decision`` (the evidence behind the promotion) is stored
    on the promoted version's row. ``replacing``, when given, must still be the
    champion: a challenger that beat champion A must not silently replace a B
    that someone promoted meanwhile.
    """
    ensure_initial_champion(settings)
    with _connect(settings, "promote a model version", write=True) as conn:
        entry = _require(conn, version, settings.home)
        _verify_files(entry)
        current = _current(conn, CHAMPION, lock=True)
        if current == version:
            raise RegistryError(f"{version} is already the champion")
        if replacing is not None and current != replacing:
            raise RegistryError(
                f"not promoting {version}: it was compared with {replacing}, but the champion "
                f"is now {current}",
                hint="run the fine-tune flow again against the current champion",
            )
        evidence = {
            "action": "promote",
            "reason": reason,
            "replaced": current,
            "at": _now(),
            **(decision or {}),
        }
        _set_status(conn, version, "champion", evidence)
        if current is not None:
            _set_status(conn, current, "retired")
        _move_alias(conn, CHAMPION, version, current)
        if _current(conn, CHALLENGER) == version:
            conn.execute(sa.delete(model_aliases).where(model_aliases.c.alias == CHALLENGER))
        return _log_event(conn, CHAMPION, version, current, "promote", reason)


def _predecessor(conn: Connection, version: str) -> str | None:
    """The champion ``version`` replaced when it was last promoted (None if it never was)."""
    query = (
        sa.select(model_alias_events.c.previous_version)
        .where(
            model_alias_events.c.alias == CHAMPION,
            model_alias_events.c.version == version,
            model_alias_events.c.action == "promote",
        )
        .order_by(model_alias_events.c.id.desc())
        .limit(1)
    )
    return conn.execute(query).scalar()


def rollback(settings: Settings, *, reason: str | None = None) -> AliasChange:
    """Put back the champion that the current one replaced, in one transaction.

    The current champion becomes ``rolled_back``. Rolling back twice walks the
    promotion chain further back (C -> B -> A), never back and forth.
    """
    ensure_initial_champion(settings)
    with _connect(settings, "roll back the champion", write=True) as conn:
        current = _current(conn, CHAMPION, lock=True)
        previous = None if current is None else _predecessor(conn, current)
        if current is None or previous is None:
            raise RegistryError(
                f"nothing to roll back to: champion {current} was not promoted over another "
                "version",
                hint="`stocktrend models list` shows the versions; promote one explicitly",
            )
        target = _require(conn, previous, settings.home)
        _verify_files(target)
        note = {"action": "rollback", "reason": reason, "replaced": current, "at": _now()}
        _set_status(conn, current, "rolled_back", note)
        _set_status(conn, previous, "champion")
        _move_alias(conn, CHAMPION, previous, current)
        return _log_event(conn, CHAMPION, previous, current, "rollback", reason)


def record_decision(
    version: str, settings: Settings, *, status: str, decision: Mapping[str, Any]
) -> ModelVersion:
    """Store a decision about ``version`` (e.g. ``rejected`` and why) without moving aliases."""
    if status not in MODEL_STATUSES:
        raise ValueError(f"status {status!r} is not one of {MODEL_STATUSES}")
    with _connect(settings, "record a model decision", write=True) as conn:
        _require(conn, version, settings.home)
        _set_status(conn, version, status, decision)
        return _require(conn, version, settings.home)
