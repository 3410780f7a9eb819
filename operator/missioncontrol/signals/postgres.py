"""Reading a PostgreSQL database the way an operator should: with a connect deadline, in a
read-only transaction, under a statement timeout, so a hung or overloaded database delays one
step and can change nothing. The DSN comes from a Secret (references.secret_value)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg
from psycopg.rows import dict_row

CONNECT_TIMEOUT = 5.0     # seconds to get a connection
STATEMENT_TIMEOUT = 5.0   # seconds any one statement may run


class DatabaseError(Exception):
    """The database could not be read: the reason in words, never the DSN (it holds a
    password)."""


@asynccontextmanager
async def read_only(dsn: str, *, connect_timeout: float = CONNECT_TIMEOUT,
                    statement_timeout: float = STATEMENT_TIMEOUT
                    ) -> AsyncIterator[psycopg.AsyncConnection]:
    """A connection inside a read-only transaction that is rolled back at the end."""
    try:
        # libpq's connect_timeout counts per address tried; wait_for bounds the whole.
        # prepare_threshold=None: psycopg prepares nothing on the server by itself. The
        # session is short, a pooler in transaction mode (PgBouncer) would lose what it
        # prepared, and the generic plans' DEALLOCATE ALL would too.
        conn = await asyncio.wait_for(psycopg.AsyncConnection.connect(
            dsn, connect_timeout=max(1, int(connect_timeout)), row_factory=dict_row,
            application_name="mission-control", prepare_threshold=None),
            connect_timeout + 1)
    except TimeoutError:
        raise DatabaseError(f"no connection within {connect_timeout:g}s") from None
    except psycopg.Error as exc:
        raise DatabaseError(_said(exc)) from None
    try:
        await conn.execute("BEGIN READ ONLY")
        await conn.execute(f"SET LOCAL statement_timeout = {int(statement_timeout * 1000)}")
        yield conn
    except psycopg.Error as exc:
        raise DatabaseError(_said(exc)) from None
    finally:
        try:
            await asyncio.wait_for(conn.close(), 5)
        except (TimeoutError, psycopg.Error):
            pass


async def rows(conn: psycopg.AsyncConnection, sql: str, params: tuple = ()) -> list[dict]:
    cursor = await conn.execute(sql, params)
    return await cursor.fetchall()


def _said(exc: psycopg.Error) -> str:
    # The first line: libpq adds hints over several lines.
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else 'no message'}"
