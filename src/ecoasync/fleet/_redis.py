"""``RedisLedger``: the slot ledger in Redis, shared by every process and host that reaches it.

One Lua script per claim does everything atomically on the server: it drops expired leases,
finds the job's live claim (idempotent per job id), counts each candidate bucket, chooses by
``score * (1 + tolerance * load)`` (the float arithmetic of the in-process ledger: Lua numbers
are doubles and the scores travel as ``repr`` strings) and books the bucket.

Keys, all under one hash tag per zone so the scripts also run on Redis Cluster::

    <namespace>:{<zone>}:b:<bucket µs>   sorted set  job id -> lease expiry (µs)
    <namespace>:{<zone>}:jobs            hash        job id -> "bucket|start µs|expected|expiry µs"
    <namespace>:{<zone>}:leases          sorted set  job id -> lease expiry (µs), to forget jobs

Expiry is judged by the caller's clock (``now``), never Redis's. Every key also carries a
Redis TTL (the longest lease written to it, plus an hour), so nothing outlives its leases.

Layer: edges (a ``Ledger`` in Redis); imports values (``_ledger``) and the fleet's own modules.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

import anyio.lowlevel

from .._ledger import Choice, Claim
from ._common import SharedLedger, bucket_of, from_us, to_us
from ._store import import_off_loop, needs

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from .._ledger import Ledger

__all__ = ["RedisLedger"]

_GC_MS: Final = 3_600_000
MAX_CONNECTIONS: Final = 32
"""Connections a ledger or cache opens to Redis per event loop."""

# KEYS: jobs, leases, bucket keys...   ARGV: job, now, expiry, tolerance, capacity, prefix,
# ttl ms, and the choices in one string, "<key index> <start µs> <expected> <score>;" each
# (one argument, not four per choice: redis-py packs each argument on its own)
_CLAIM: Final = """
local jobs, leases = KEYS[1], KEYS[2]
local job, now, expiry = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local tol, cap, prefix, ttl = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6], tonumber(ARGV[7])
-- forget a few jobs whose leases have passed (their bucket entries go when counted)
local stale = redis.call('ZRANGEBYSCORE', leases, '-inf', now, 'LIMIT', 0, 32)
for _, old in ipairs(stale) do
  redis.call('HDEL', jobs, old)
  redis.call('ZREM', leases, old)
end
local held = redis.call('HGET', jobs, job)
if held then
  local bucket, start, expected, until_ = string.match(held, '^([^|]+)|([^|]+)|([^|]+)|([^|]+)$')
  until_ = tonumber(until_)
  if until_ > now then  -- the job's live claim: the same one again, its lease extended
    if expiry > until_ then
      until_ = expiry
      redis.call('ZADD', prefix .. bucket, until_, job)
      if redis.call('PTTL', prefix .. bucket) < ttl then redis.call('PEXPIRE', prefix .. bucket, ttl) end
      redis.call('HSET', jobs, job, string.format('%s|%s|%s|%d', bucket, start, expected, until_))
      redis.call('ZADD', leases, until_, job)
    end
    return {0, bucket, start, expected, string.format('%d', until_)}
  end
  redis.call('ZREM', prefix .. bucket, job)
end
local loads = {}
for k = 3, #KEYS do
  redis.call('ZREMRANGEBYSCORE', KEYS[k], '-inf', now)
  loads[k] = redis.call('ZCARD', KEYS[k])
end
local best, best_t, best_free, best_k, best_start, best_expected = nil, nil, false, nil, nil, nil
for k, start, expected, score in string.gmatch(ARGV[8], '(%d+) (%S+) (%S+) (%S+);') do
  k = tonumber(k)
  local t, sc = tonumber(start), tonumber(score)
  local load = loads[k]
  local free = cap <= 0 or load < cap
  local eff = sc
  if load > 0 then eff = sc * (1 + tol * load) end
  if best == nil or (free and not best_free) or (free == best_free and (eff < best or (eff == best and t < best_t))) then
    best, best_t, best_free, best_k, best_start, best_expected = eff, t, free, k, start, expected
  end
end
local key = KEYS[best_k]
local bucket = string.sub(key, #prefix + 1)
redis.call('ZADD', key, expiry, job)
redis.call('HSET', jobs, job, string.format('%s|%s|%s|%d', bucket, best_start, best_expected, expiry))
redis.call('ZADD', leases, expiry, job)
for _, name in ipairs({key, jobs, leases}) do
  if redis.call('PTTL', name) < ttl then redis.call('PEXPIRE', name, ttl) end
end
return {1, bucket, best_start, best_expected, string.format('%d', expiry)}
"""

# KEYS: jobs, leases   ARGV: job, prefix, bucket, start µs
_RELEASE: Final = """
local held = redis.call('HGET', KEYS[1], ARGV[1])
if not held then return 0 end
local bucket, start = string.match(held, '^([^|]+)|([^|]+)|')
if bucket ~= ARGV[3] or start ~= ARGV[4] then return 0 end
redis.call('ZREM', ARGV[2] .. bucket, ARGV[1])
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"""


class RedisLedger(SharedLedger):
    """The slot ledger in Redis: every process that uses the same Redis and ``namespace``
    spreads its jobs over the same buckets (see :class:`~ecoasync.Ledger` for the contract).

    Needs the ``redis`` extra (redis-py's asyncio client; asyncio only). One Lua script (one
    round trip) per claim, one per release.

    Args:
        redis: a ``redis://`` URL, or a ``redis.asyncio.Redis`` client (yours to close).
        namespace: the prefix of every key; processes that should share a ledger use the same.
        tolerance: how much dirtier (``0.02`` = 2 %) each live claim makes its bucket look.
        bucket: the length of a bucket (default 30 minutes), aligned to the epoch.
        capacity: at most this many live claims per bucket; full buckets are skipped while
            another choice has room (``None``: no limit).
        timeout: seconds a call may take before the process's own ledger answers instead
            (default 2: a store that answers late under a herd of sessions is still better than
            none; one that is gone refuses at once).
        retry_after: seconds the store is left alone after a failure (default 5).
        fallback: the ledger used while Redis is down (default: a process-local ``SlotLedger``
            with the same tolerance, bucket and capacity).
    """

    name = "redis"

    def __init__(
        self,
        redis: str | Redis,
        *,
        namespace: str = "ecoasync",
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
        self.namespace = check_namespace(namespace)
        needs("redis", "redis", "RedisLedger")
        self._clients = RedisClients(redis)
        self._claim_script: Any = None
        self._release_script: Any = None
        self.round_trips = 0
        """Commands and scripts sent to Redis (one per claim, release or loads)."""

    async def _prepare(self) -> None:
        await self._clients.get()

    def _prefix(self, zone: str) -> str:
        return f"{self.namespace}:{{{hash_tag(zone)}}}:"

    async def _scripts(self) -> tuple[Any, Any]:
        client = await self._clients.get()
        if self._claim_script is None or self._claim_script.registered_client is not client:
            self._claim_script = client.register_script(_CLAIM)
            self._release_script = client.register_script(_RELEASE)
        return self._claim_script, self._release_script

    async def _claim(
        self,
        job_id: str,
        zone: str,
        choices: Sequence[Choice],
        lease: timedelta,
        now: datetime,
    ) -> Claim:
        script, _ = await self._scripts()
        prefix = self._prefix(zone)
        now_us = to_us(now)
        keys = [prefix + "jobs", prefix + "leases"]
        index: dict[int, int] = {}
        args: list[str | int] = [
            job_id,
            now_us,
            to_us(now + lease),
            repr(self.tolerance),
            self.capacity or 0,
            prefix + "b:",
            int(lease.total_seconds() * 1000) + _GC_MS,
        ]
        packed = []
        for choice in choices:
            bucket = bucket_of(choice.start, self._step)
            k = index.get(bucket)
            if k is None:
                k = index[bucket] = len(keys) + 1  # (Lua counts from 1)
                keys.append(f"{prefix}b:{bucket}")
            packed.append(f"{k} {to_us(choice.start)} {choice.expected!r} {choice.score!r};")
        args.append("".join(packed))
        self.round_trips += 1
        _, bucket, start, expected, expiry = await script(keys=keys, args=args)
        return Claim(
            job_id=job_id,
            zone=zone,
            slot=from_us(int(bucket)),
            start=from_us(int(start)),
            expected=float(expected),
            expires_at=from_us(int(expiry)),
            ledger=self.name,
        )

    async def _release(self, claim: Claim) -> None:
        _, script = await self._scripts()
        prefix = self._prefix(claim.zone)
        self.round_trips += 1
        await script(
            keys=[prefix + "jobs", prefix + "leases"],
            args=[claim.job_id, prefix + "b:", to_us(claim.slot), to_us(claim.start)],
        )

    async def _loads(
        self, zone: str, start: datetime, end: datetime, now: datetime
    ) -> dict[datetime, int]:
        buckets = self._buckets(start, end)
        if not buckets:
            await anyio.lowlevel.checkpoint()
            return {}
        client = await self._clients.get()
        prefix = self._prefix(zone) + "b:"
        async with client.pipeline(transaction=False) as pipe:
            for bucket in buckets:
                pipe.zcount(f"{prefix}{bucket}", f"({to_us(now)}", "+inf")
            self.round_trips += 1
            counts = await pipe.execute()
        return {from_us(b): int(n) for b, n in zip(buckets, counts, strict=True) if n}

    async def aclose(self) -> None:
        """Close the client this ledger made from a URL (a client passed in is yours)."""
        await self._clients.aclose()

    def __repr__(self) -> str:
        return (
            f"RedisLedger(namespace={self.namespace!r}, tolerance={self.tolerance:g}, "
            f"bucket={self.bucket}, capacity={self.capacity}, {self.guard!r})"
        )


def check_namespace(namespace: object) -> str:
    if not isinstance(namespace, str) or not namespace or any(c in namespace for c in "{}"):
        raise ValueError(f"namespace must be a non-empty string without braces, got {namespace!r}")
    return namespace


def hash_tag(zone: str) -> str:
    """The zone as a Redis Cluster hash tag: never empty, never a brace in it."""
    return zone.replace("{", "(").replace("}", ")") or "-"


class RedisClients:
    """The client of a ledger or cache: the one it was given, or one per event loop made from a
    URL (redis-py's connections belong to the loop that opened them: a web app's loop and the
    sync API's loop in one process each get their own)."""

    def __init__(self, redis: str | Redis) -> None:
        self._given: Redis | None = None
        self._url: str | None = None
        if isinstance(redis, str):
            if not redis.startswith(("redis://", "rediss://", "unix://")):
                raise ValueError(
                    f"redis must be a redis://, rediss:// or unix:// URL or a redis.asyncio.Redis, "
                    f"got {redis.split('@')[-1]!r}"
                )
            self._url = redis
        else:
            self._given = redis
        self._clients: dict[object, Redis] = {}

    async def get(self) -> Redis:
        """The client (made, with redis-py imported off the loop, on first use; no network)."""
        if self._given is not None:
            return self._given
        loop = anyio.lowlevel.current_token().native_token
        client = self._clients.get(loop)
        if client is None:
            await import_off_loop("redis.asyncio")
            from redis.asyncio import BlockingConnectionPool, Redis

            assert self._url is not None
            # a herd of sessions shares a few connections rather than opening one each
            pool = BlockingConnectionPool.from_url(self._url, max_connections=MAX_CONNECTIONS)
            client = self._clients[loop] = Redis(connection_pool=pool)
        return client

    async def aclose(self) -> None:
        """Close the client of the running loop (one made from a URL)."""
        client = self._clients.pop(anyio.lowlevel.current_token().native_token, None)
        if client is not None:
            await client.aclose()
            await client.connection_pool.disconnect()
