"""The event store: the applications built on SQLite (default) or PostgreSQL, plus the two tables of
our own that live beside their events (per-subscriber keys, relay tracking).

SQLite: one file per application under `<data_dir>/event-store/` (eventsourcing's SQLite recorder
names its table `stored_events`, so applications cannot share a file). PostgreSQL: one database and
schema (`TIDINGS_POSTGRES_*`), tables prefixed by application name.
"""

from __future__ import annotations

import random
import time

import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eventsourcing.application import Application
from eventsourcing.persistence import InternalError as PersistenceInternalError

from domain.definitions_store import DefinitionsApplication
from domain.sending_identities import SendingIdentitiesApplication
from domain.subscribers import SubscribersApplication
from infra.settings import Settings


class Database:
    """A small thread-safe connection to the event store database for our own tables.

    Statements use `?` placeholders; they are rewritten for PostgreSQL.
    """

    def __init__(self, settings: Settings, sqlite_path: Path | None = None) -> None:
        self.is_postgres = settings.event_store == "postgres"
        self._lock = threading.Lock()
        if self.is_postgres:
            import psycopg

            self.schema = settings.postgres_schema
            self._conn: Any = psycopg.connect(**postgres_connect_args(settings), autocommit=True)
            self._conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            self._conn.execute(f'SET search_path TO "{self.schema}"')
        else:
            assert sqlite_path is not None
            sqlite_path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(str(sqlite_path), isolation_level=None, check_same_thread=False, timeout=30)
            self._conn.execute("PRAGMA journal_mode=WAL")

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        if self.is_postgres:
            sql = sql.replace("?", "%s").replace("BLOB", "BYTEA")
        with self._lock:
            cursor = self._conn.execute(sql, tuple(params))
            try:
                rows = cursor.fetchall() if cursor.description else []
            finally:
                cursor.close()
        return [tuple(r) for r in rows]

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def postgres_connect_args(settings: Settings) -> dict[str, Any]:
    return {
        "host": settings.postgres_host,
        "port": settings.postgres_port,
        "user": settings.postgres_user,
        "password": settings.postgres_password,
        "dbname": settings.postgres_dbname,
        "connect_timeout": 10,
    }


def store_dir(settings: Settings) -> Path:
    return settings.data_dir / "event-store"


def sqlite_path(settings: Settings, app_name: str) -> Path:
    return store_dir(settings) / f"{app_name.lower()}.sqlite3"


def application_env(settings: Settings, app_name: str) -> dict[str, str]:
    """The eventsourcing environment for one application (9.5 reads persistence from env)."""
    if settings.event_store == "postgres":
        # The schema must exist before the recorders create their tables in it.
        Database(settings).close()
        return {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": settings.postgres_dbname,
            "POSTGRES_HOST": settings.postgres_host,
            "POSTGRES_PORT": str(settings.postgres_port),
            "POSTGRES_USER": settings.postgres_user,
            "POSTGRES_PASSWORD": settings.postgres_password,
            "POSTGRES_SCHEMA": settings.postgres_schema,
            "CREATE_TABLE": "y",
        }
    if settings.event_store != "sqlite":
        raise ValueError(f"TIDINGS_EVENT_STORE: {settings.event_store!r} is neither 'sqlite' nor 'postgres'")
    path = sqlite_path(settings, app_name)
    path.parent.mkdir(parents=True, exist_ok=True)
    return {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(path), "SQLITE_LOCK_TIMEOUT": "30",
            "CREATE_TABLE": "y"}


def database_for(settings: Settings, app_name: str) -> Database:
    """The database holding `app_name`'s events (our tables go beside them)."""
    return Database(settings, sqlite_path(settings, app_name))


@dataclass
class EventStore:
    settings: Settings
    subscribers: SubscribersApplication
    definitions: DefinitionsApplication
    sending_identities: SendingIdentitiesApplication
    databases: dict[str, Database] = field(default_factory=dict)

    @property
    def applications(self) -> list[Application]:
        return [self.subscribers, self.definitions, self.sending_identities]

    def database(self, app_name: str) -> Database:
        if app_name not in self.databases:
            self.databases[app_name] = database_for(self.settings, app_name)
        return self.databases[app_name]

    def close(self) -> None:
        for db in self.databases.values():
            db.close()
        self.databases.clear()
        for app in self.applications:
            app.close()


def open_event_store(settings: Settings, attempts: int = 5) -> EventStore:
    """Build every application on the configured database. Close it when done.

    Each application runs `CREATE TABLE IF NOT EXISTS` when it starts; PostgreSQL can refuse two
    processes doing that at the same moment ("tuple concurrently updated") even when the tables
    exist, so a refused start is retried after a short random pause.
    """
    for attempt in range(1, attempts + 1):
        try:
            return _open_event_store(settings)
        except PersistenceInternalError as exc:
            if "concurrently" not in str(exc) or attempt == attempts:
                raise
            time.sleep(random.uniform(0.05, 0.3) * attempt)
    raise AssertionError("unreachable")


def _open_event_store(settings: Settings) -> EventStore:
    from connectors.crypto import SubscriberKeyCipher

    databases: dict[str, Database] = {}
    key_db = databases.setdefault(SubscribersApplication.name, database_for(settings, SubscribersApplication.name))
    subscribers = SubscribersApplication(
        env=application_env(settings, SubscribersApplication.name), cipher=SubscriberKeyCipher(key_db)
    )
    definitions = DefinitionsApplication(env=application_env(settings, DefinitionsApplication.name))
    identities = SendingIdentitiesApplication(env=application_env(settings, SendingIdentitiesApplication.name))
    return EventStore(settings, subscribers, definitions, identities, databases)
