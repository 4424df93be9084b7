"""The HTTP core every live provider stands on, as small layers (as httpx composes transports).

Layer: providers (async I/O). From the bottom:

- ``_secrets``: credentials whose repr is redacted, set on a request at the last moment, and
  scrubbed from every message;
- ``_retry``: the retry policy (backoff with jitter, ``Retry-After`` with a cap);
- ``_payload``: which answers are data (2xx only), body limits, reading JSON fields;
- ``_client``: one ``httpx.AsyncClient`` per event loop, loaded off the loop; one attempt;
- ``_flight``: shared requests (single-flight) per event loop, with their own deadline and
  the pace at which they wake their waiters;
- ``_cache``: answers and failures kept for a while;
- ``_core``: :class:`HttpCore`, the layers put together for one provider, and the errors a
  user sees (:class:`~ecoasync.ForecastUnavailable`).
"""

from ._cache import TtlCache
from ._client import DEFAULT_CONNECT_TIMEOUT, DEFAULT_TIMEOUT
from ._core import HttpCore, HttpStatusUnavailable, check_base_url, check_seconds
from ._flight import RELEASE_BATCH
from ._payload import (
    MAX_BODY_BYTES,
    PayloadError,
    as_list,
    as_number,
    as_time,
    field,
    kind_of,
)
from ._retry import Retry, Sleep, parse_retry_after
from ._secrets import Secret, SecretHeader, secret_from

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_TIMEOUT",
    "MAX_BODY_BYTES",
    "RELEASE_BATCH",
    "HttpCore",
    "HttpStatusUnavailable",
    "PayloadError",
    "Retry",
    "Secret",
    "SecretHeader",
    "Sleep",
    "TtlCache",
    "as_list",
    "as_number",
    "as_time",
    "check_base_url",
    "check_seconds",
    "field",
    "kind_of",
    "parse_retry_after",
    "secret_from",
]
