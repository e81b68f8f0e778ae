"""Reaching the database that holds the Optuna studies: URLs, one shared engine per URL, retries, and errors that
never show a password.

SQLite and PostgreSQL (psycopg 3) are supported. The schema is created by one process at a time (optuna#1092), and a
transient connection error is retried with backoff before it becomes a `StorageError`.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import optuna
import sqlalchemy
from sqlalchemy.engine import make_url

TRANSIENT_RETRIES = 4
_SCHEMA_LOCK = 0x5357_4545  # PostgreSQL advisory lock id guarding schema creation ("SWEE")

log = logging.getLogger(__name__)
T = TypeVar("T")


class StorageError(Exception):
    """The storage cannot be reached or used; the message never contains a password."""


def safe_url(url: str) -> str:
    """The URL with its password masked, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except sqlalchemy.exc.ArgumentError:
        return "<unparseable storage URL>"


def _scrub(text: str, url: str) -> str:
    try:
        password = make_url(url).password
    except sqlalchemy.exc.ArgumentError:
        password = None
    return text.replace(str(password), "***") if password else text


@contextlib.contextmanager
def _schema_lock(url: str) -> Iterator[None]:
    """Only one process creates the schema at a time (optuna#1092: concurrent creation races)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database:
        path = Path(parsed.database)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_name(path.name + ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield
    elif parsed.get_backend_name() == "postgresql":
        engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
        try:
            with engine.connect() as connection:
                connection.execute(sqlalchemy.text(f"SELECT pg_advisory_lock({_SCHEMA_LOCK})"))
                try:
                    yield
                finally:
                    connection.execute(sqlalchemy.text(f"SELECT pg_advisory_unlock({_SCHEMA_LOCK})"))
        finally:
            engine.dispose()
    else:
        yield


def _engine_options(url: str) -> dict[str, Any]:
    backend = make_url(url).get_backend_name()
    if backend == "postgresql":
        # Idle connections get dropped by servers and proxies: test each before use.
        return {
            "pool_pre_ping": True,
            "pool_size": 8,  # the operator's worker threads
            "max_overflow": 8,
            "pool_recycle": 1800,
            "connect_args": {"connect_timeout": 10},
        }
    if backend == "sqlite":
        return {"connect_args": {"timeout": 30}}
    return {"pool_pre_ping": True}


def driver_url(url: str) -> str:
    """`postgresql://` and `postgres://` (what CloudNativePG and most providers hand out) use psycopg 3, the
    driver installed here; SQLAlchemy would otherwise pick psycopg2."""
    for scheme in ("postgresql://", "postgres://"):
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url.removeprefix(scheme)
    return url


_storages: dict[str, optuna.storages.RDBStorage] = {}
_storages_lock = threading.Lock()


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """The Optuna RDB storage for `url` (SQLite or PostgreSQL via psycopg 3); raises `StorageError`.

    One per URL per process, shared by every study that uses it: an RDBStorage is thread-safe (a session per
    operation), so a hundred studies share one connection pool rather than exhaust the server's connections."""
    url = driver_url(url)
    with _storages_lock:
        storage = _storages.get(url)
    if storage is not None:
        return storage
    try:
        with _schema_lock(url):
            storage = optuna.storages.RDBStorage(url, engine_kwargs=_engine_options(url))
    except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError, ImportError, ValueError) as exc:
        reason = _scrub(str(getattr(exc, "orig", None) or exc).strip().splitlines()[0], url)
        raise StorageError(f"cannot open the storage {safe_url(url)}: {reason}") from None
    with _storages_lock:
        shared = _storages.setdefault(url, storage)
    if shared is not storage:  # another thread opened it meanwhile
        storage.engine.dispose()
    return shared


def retrying(url: str, operation: Callable[[], T], what: str) -> T:
    """Run a storage operation, retrying transient connection errors with backoff."""
    for attempt in range(TRANSIENT_RETRIES):
        try:
            return operation()
        except (
            sqlalchemy.exc.OperationalError,
            sqlalchemy.exc.InterfaceError,
            optuna.exceptions.StorageInternalError,
        ) as exc:
            if attempt == TRANSIENT_RETRIES - 1:
                reason = _scrub(str(getattr(exc, "orig", None) or exc).strip().splitlines()[0], url)
                raise StorageError(f"{what}: the storage {safe_url(url)} is unreachable: {reason}") from None
            delay = 0.5 * 2**attempt
            log.warning("%s: storage error, retrying in %.1fs", what, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")
