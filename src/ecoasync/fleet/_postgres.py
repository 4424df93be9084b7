"""``PostgresLedger``: the slot ledger as rows in Postgres, for shops whose queue lives there.

One row per live claim, unique per ``(zone, job_id)``. A claim is one call of a PL/pgSQL
function (one round trip): under a transaction-level advisory lock per zone it deletes the
zone's expired claims, returns the job's live claim if it has one (its lease extended), else
counts the candidate buckets, chooses by ``score * (1 + tolerance * load)`` in ``float8``
(IEEE doubles, as in Python), skipping full buckets, and inserts the claim.

Create the table and the function once with ``await ledger.setup()``, or put
:meth:`PostgresLedger.migration_sql` in your migrations.

Layer: edges (a ``Ledger`` in Postgres); imports values (``_ledger``) and the fleet's own modules.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

import anyio
import anyio.lowlevel

from .._ledger import Choice, Claim
from ._common import SharedLedger, bucket_of, from_us, to_us
from ._store import import_off_loop, needs

if TYPE_CHECKING:
    from psycopg_pool import AsyncConnectionPool

    from .._ledger import Ledger

__all__ = ["PostgresLedger"]

_IDENTIFIER: Final = re.compile(r"^[a-z_][a-z0-9_]{0,40}$")

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS {t} (
    zone text NOT NULL,
    job_id text NOT NULL,
    bucket bigint NOT NULL,
    start_us bigint NOT NULL,
    expected double precision NOT NULL,
    expires_us bigint NOT NULL,
    PRIMARY KEY (zone, job_id)
);
CREATE INDEX IF NOT EXISTS {t}_by_bucket ON {t} (zone, bucket);
CREATE INDEX IF NOT EXISTS {t}_by_expiry ON {t} (zone, expires_us);

CREATE OR REPLACE FUNCTION {t}_claim(
    p_zone text, p_job text, p_now bigint, p_expiry bigint, p_tol double precision,
    p_cap integer, p_buckets bigint[], p_starts bigint[], p_expected double precision[],
    p_scores double precision[]
) RETURNS TABLE (bucket bigint, start_us bigint, expected double precision, expires_us bigint)
LANGUAGE plpgsql AS $$
DECLARE
    held {t}%ROWTYPE;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('{t}:' || p_zone, 0));
    DELETE FROM {t} c WHERE c.zone = p_zone AND c.expires_us <= p_now;
    SELECT * INTO held FROM {t} c WHERE c.zone = p_zone AND c.job_id = p_job;
    IF FOUND THEN
        IF p_expiry > held.expires_us THEN
            UPDATE {t} c SET expires_us = p_expiry WHERE c.zone = p_zone AND c.job_id = p_job;
            held.expires_us := p_expiry;
        END IF;
        RETURN QUERY SELECT held.bucket, held.start_us, held.expected, held.expires_us;
        RETURN;
    END IF;
    RETURN QUERY
    WITH choice AS (
        SELECT * FROM unnest(p_buckets, p_starts, p_expected, p_scores)
            WITH ORDINALITY AS u(b, s, e, score, i)
    ), load AS (
        SELECT c.bucket AS b, count(*)::bigint AS n FROM {t} c
        WHERE c.zone = p_zone AND c.bucket = ANY(p_buckets) GROUP BY c.bucket
    ), chosen AS (
        SELECT choice.b, choice.s, choice.e FROM choice LEFT JOIN load USING (b)
        ORDER BY
            p_cap > 0 AND coalesce(load.n, 0) >= p_cap,
            CASE WHEN coalesce(load.n, 0) > 0
                THEN choice.score * (1.0::float8 + p_tol * load.n::float8)
                ELSE choice.score END,
            choice.s,
            choice.i
        LIMIT 1
    )
    INSERT INTO {t} AS c (zone, job_id, bucket, start_us, expected, expires_us)
    SELECT p_zone, p_job, chosen.b, chosen.s, chosen.e, p_expiry FROM chosen
    RETURNING c.bucket, c.start_us, c.expected, c.expires_us;
END
$$;
"""


class PostgresLedger(SharedLedger):
    """The slot ledger in Postgres: every process on the same database and ``table`` spreads
    its jobs over the same buckets (see :class:`~ecoasync.Ledger` for the contract).

    Needs the ``postgres`` extra (psycopg 3 with its pool; asyncio only). Call
    ``await ledger.setup()`` once (idempotent, safe from many processes at once), or run
    :meth:`migration_sql` in your migrations.

    Args:
        conninfo: a ``postgresql://`` URL or libpq string, or a ``psycopg_pool.AsyncConnectionPool``
            (opened and closed by you).
        table: the table's name (lower-case letters, digits, ``_``); its claim function is
            ``<table>_claim``.
        tolerance: how much dirtier (``0.02`` = 2 %) each live claim makes its bucket look.
        bucket: the length of a bucket (default 30 minutes), aligned to the epoch.
        capacity: at most this many live claims per bucket (``None``: no limit).
        timeout: seconds a call may take before the process's own ledger answers instead
            (default 2).
        retry_after: seconds the store is left alone after a failure (default 5).
        fallback: the ledger used while Postgres is down (default: a process-local
            ``SlotLedger`` with the same tolerance, bucket and capacity).
    """

    name = "postgres"

    def __init__(
        self,
        conninfo: str | AsyncConnectionPool,
        *,
        table: str = "ecoasync_claims",
        tolerance: float = 0.02,
        bucket: timedelta = timedelta(minutes=30),
        capacity: int | None = None,
        timeout: float | timedelta = 2.0,
        retry_after: float | timedelta = 5.0,
        fallback: Ledger | None = None,
    ) -> None:
        super().__init__(
            tolerance=tolerance,
            bucket=bucket,
            capacity=capacity,
            timeout=timeout,
            retry_after=retry_after,
            fallback=fallback,
        )
        if not isinstance(table, str) or not _IDENTIFIER.match(table):
            raise ValueError(
                f"table must be a lower-case SQL name (letters, digits, _), got {table!r}"
            )
        self.table = table
        needs("psycopg_pool", "postgres", "PostgresLedger")
        self._pools = _Pools(conninfo)
        self._claim_sql = (
            f"SELECT * FROM {table}_claim(%s::text, %s::text, %s::bigint, %s::bigint,"
            " %s::float8, %s::int, %s::bigint[], %s::bigint[], %s::float8[], %s::float8[])"
        )
        self.round_trips = 0
        """Statements sent to Postgres (one per claim, release or loads)."""

    async def _prepare(self) -> None:
        await import_off_loop("psycopg_pool")

    def migration_sql(self) -> str:
        """The SQL that creates the table, its indexes and its claim function (idempotent)."""
        return _SCHEMA.replace("{t}", self.table)

    async def setup(self) -> None:
        """Create the table and the claim function if they are not there (idempotent)."""
        pool = await self._pools.get()
        async with pool.connection() as conn, conn.transaction():
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [self.table]
            )
            await conn.execute(self.migration_sql().encode())

    async def _claim(
        self,
        job_id: str,
        zone: str,
        choices: Sequence[Choice],
        lease: timedelta,
        now: datetime,
    ) -> Claim:
        pool = await self._pools.get()
        params: list[Any] = [
            zone,
            job_id,
            to_us(now),
            to_us(now + lease),
            self.tolerance,
            self.capacity or 0,
            [bucket_of(c.start, self._step) for c in choices],
            [to_us(c.start) for c in choices],
            [c.expected for c in choices],
            [c.score for c in choices],
        ]
        async with pool.connection() as conn:
            self.round_trips += 1
            cursor = await conn.execute(self._claim_sql, params, prepare=True)
            row = await cursor.fetchone()
        assert row is not None
        bucket, start, expected, expiry = row
        return Claim(
            job_id=job_id,
            zone=zone,
            slot=from_us(bucket),
            start=from_us(start),
            expected=float(expected),
            expires_at=from_us(expiry),
            ledger=self.name,
        )

    async def _release(self, claim: Claim) -> None:
        pool = await self._pools.get()
        async with pool.connection() as conn:
            self.round_trips += 1
            await conn.execute(
                f"DELETE FROM {self.table} WHERE zone = %s AND job_id = %s"
                " AND bucket = %s::bigint AND start_us = %s::bigint",
                [claim.zone, claim.job_id, to_us(claim.slot), to_us(claim.start)],
            )

    async def _loads(
        self, zone: str, start: datetime, end: datetime, now: datetime
    ) -> dict[datetime, int]:
        buckets = self._buckets(start, end)
        if not buckets:
            await anyio.lowlevel.checkpoint()
            return {}
        pool = await self._pools.get()
        async with pool.connection() as conn:
            self.round_trips += 1
            cursor = await conn.execute(
                f"SELECT bucket, count(*) FROM {self.table} WHERE zone = %s"
                " AND bucket >= %s::bigint AND bucket <= %s::bigint AND expires_us > %s::bigint"
                " GROUP BY bucket ORDER BY bucket",
                [zone, buckets[0], buckets[-1], to_us(now)],
            )
            rows = await cursor.fetchall()
        return {from_us(b): int(n) for b, n in rows}

    async def aclose(self) -> None:
        """Close the pool this ledger made from a connection string (a pool passed in is yours)."""
        await self._pools.aclose()

    def __repr__(self) -> str:
        return (
            f"PostgresLedger(table={self.table!r}, tolerance={self.tolerance:g}, "
            f"bucket={self.bucket}, capacity={self.capacity}, {self.guard!r})"
        )


class _Pools:
    """The pool of a ledger: the one it was given, or one per event loop made from a connection
    string (opened on first use)."""

    def __init__(self, conninfo: str | AsyncConnectionPool) -> None:
        self._given: AsyncConnectionPool | None = None
        self._conninfo: str | None = None
        if isinstance(conninfo, str):
            self._conninfo = conninfo
        else:
            self._given = conninfo
        self._pools: dict[object, tuple[AsyncConnectionPool, anyio.Event]] = {}

    async def get(self) -> AsyncConnectionPool:
        if self._given is not None:
            return self._given
        loop = anyio.lowlevel.current_token().native_token
        known = self._pools.get(loop)
        if known is not None:
            pool, ready = known
            if not ready.is_set():  # another task is opening it
                await ready.wait()
                if loop not in self._pools:
                    raise RuntimeError("the connection pool could not be opened")
            return pool
        from psycopg_pool import AsyncConnectionPool

        assert self._conninfo is not None
        pool = AsyncConnectionPool(
            self._conninfo,
            min_size=1,
            max_size=4,
            open=False,
            kwargs={"autocommit": True},
            timeout=5.0,
        )
        ready = anyio.Event()
        self._pools[loop] = (pool, ready)
        try:
            await pool.open()
        except BaseException:
            del self._pools[loop]
            raise
        finally:
            ready.set()
        return pool

    async def aclose(self) -> None:
        """Close the pool of the running loop (one made from a connection string)."""
        known = self._pools.pop(anyio.lowlevel.current_token().native_token, None)
        if known is not None:
            await known[0].close()
