"""Many processes, one schedule: slot ledgers and a forecast cache shared through Redis or
Postgres.

- :class:`RedisLedger` (extra ``redis``) and :class:`PostgresLedger` (extra ``postgres``)
  keep the :class:`~ecoasync.Ledger` contract across processes and hosts.
- :class:`SharedCacheProvider` (extra ``redis``) wraps a forecast provider so that a whole
  fleet makes one request per zone and kind per TTL.

A store that is down or slow never holds a session past its bound: the process's own ledger
or provider answers, and a :class:`StoreGuard` says so once and counts it.

Layer: edges (shared stores for a fleet); imports its own modules.
"""

from ._cache import SharedCacheProvider as SharedCacheProvider
from ._postgres import PostgresLedger as PostgresLedger
from ._redis import RedisLedger as RedisLedger
from ._store import StoreGuard as StoreGuard

__all__ = ["PostgresLedger", "RedisLedger", "SharedCacheProvider", "StoreGuard"]
