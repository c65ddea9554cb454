"""Fixtures running the same event store cases on SQLite and on PostgreSQL (infra/scripts/postgres.sh)."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.settings import Settings

REPO = Path(__file__).resolve().parents[2]


def postgres_available(settings: Settings) -> bool:
    import psycopg

    from infra.event_store import postgres_connect_args

    try:
        psycopg.connect(**postgres_connect_args(settings)).close()
        return True
    except psycopg.OperationalError:
        subprocess.run(["bash", str(REPO / "infra/scripts/postgres.sh")], check=False, capture_output=True)
    try:
        psycopg.connect(**postgres_connect_args(settings)).close()
        return True
    except psycopg.OperationalError:
        return False


def on_backend(base: Settings, backend: str) -> Iterator[Settings]:
    """`base` on `backend`; PostgreSQL gets a fresh schema, dropped afterwards."""
    if backend == "sqlite":
        yield base.model_copy(update={"event_store": "sqlite"})
        return
    settings = base.model_copy(update={"event_store": "postgres", "postgres_schema": f"t_{uuid.uuid4().hex[:10]}"})
    if not postgres_available(settings):
        pytest.fail("PostgreSQL is not reachable; run infra/scripts/postgres.sh")
    yield settings
    import psycopg

    from infra.event_store import postgres_connect_args

    with psycopg.connect(**postgres_connect_args(settings), autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{settings.postgres_schema}" CASCADE')


def dump_postgres_schema(settings: Settings) -> bytes:
    """Every row of every table in the test's schema, as text."""
    import psycopg

    from infra.event_store import postgres_connect_args

    out = []
    with psycopg.connect(**postgres_connect_args(settings)) as conn:
        tables = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (settings.postgres_schema,)
        ).fetchall()
        for (table,) in tables:
            for row in conn.execute(f'SELECT * FROM "{settings.postgres_schema}"."{table}"').fetchall():
                out.append(repr(row).encode())
                out.extend(bytes(v) for v in row if isinstance(v, (bytes, memoryview)))
    return b"\n".join(out)


def dump_sqlite_files(settings: Settings) -> bytes:
    from infra.event_store import store_dir

    return b"".join(p.read_bytes() for p in sorted(store_dir(settings).glob("*")) if p.is_file())


def dump_event_store(settings: Settings) -> bytes:
    return dump_postgres_schema(settings) if settings.event_store == "postgres" else dump_sqlite_files(settings)
