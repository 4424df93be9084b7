"""A loopback HTTP server that speaks the grid APIs (UK Carbon Intensity, Electricity Maps v3,
WattTime v3) and misbehaves on demand. Used by the provider tests and ``bench/providers.py``.

    with GridServer() as server:
        provider = UKCarbonIntensityProvider(base_url=server.url)
        server.script = ["503", "ok"]  # the next request gets a 503, the one after a good answer
        server.mode = "ok"             # what every request gets once the script is used up

Modes: ``ok``, ``hang`` (never answers), ``slow`` (the body trickles), ``500``, ``503``,
``429`` (``Retry-After: server.retry_after``), ``401``, ``truncated`` (the connection closes
mid-body), ``truncated-json`` (a complete response whose JSON is cut), ``malformed`` (not
JSON), ``schema`` (JSON of the wrong shape), ``empty`` (no slots), ``short`` (two slots),
``tz`` (times written with a +05:30 offset), ``late`` (a good answer after ``server.delay``
seconds), ``302`` (a redirect whose body is a good answer), ``overlap`` (slots that overlap),
``huge`` (an intensity too large for a float).

Run ``python -m tests.grid_server`` to serve in the foreground (it prints ``PORT <n>``).
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import sys
import threading
from datetime import UTC, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

SLOT = timedelta(minutes=30)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
OFFSET = timezone(timedelta(hours=5, minutes=30))
EM_TOKEN = "em-test-token-5f3a9c"
WT_USER, WT_PASSWORD = "wt-user", "wt-pass-7d41e2"


def uk_value(start: datetime) -> float:
    """The test grid: dirty at 18:00 UTC (275), clean at 06:00 (75)."""
    hour = start.hour + start.minute / 60
    return float(round(175 + 100 * math.cos(2 * math.pi * (hour - 18) / 24)))


def floor(when: datetime, step: timedelta) -> datetime:
    return when - (when - EPOCH) % step


def parse_time(text: str) -> datetime:
    value = text.strip()
    if value.endswith("Z"):
        value = value[:-1] + "+00:00"
    return datetime.fromisoformat(value).astimezone(UTC)


class GridServer:
    """The server, run in a thread on a free loopback port."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.script: list[str] = []
        self.retry_after = "1"
        self.delay = 0.5
        """Seconds a ``late`` answer takes."""
        self.arrived = threading.Event()
        """Set when a request arrives (clear it to wait for the next)."""
        self.now = datetime(2026, 3, 18, tzinfo=UTC)
        """The API's "now": actuals exist for slots that ended before it; EM/WattTime start here."""
        self.requests: list[str] = []
        self.headers: list[dict[str, str]] = []
        self.bodies: list[str] = []
        self.zone_scale: dict[str, float] = {}
        """Electricity Maps answers for these zones are the test grid times the factor."""
        self.echo = False
        """Error answers repeat the credentials they were sent (as some APIs do)."""
        self.wt_tokens: set[str] = set()
        self.logins = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def count(self, prefix: str = "") -> int:
        with self._lock:
            return sum(1 for r in self.requests if r.startswith(prefix))

    def next_mode(self) -> str:
        with self._lock:
            return self.script.pop(0) if self.script else self.mode

    def start(self) -> GridServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> GridServer:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- payloads ---

    def fmt(self, when: datetime, mode: str, *, seconds: bool = False) -> str:
        pattern = "%Y-%m-%dT%H:%M:%S" if seconds else "%Y-%m-%dT%H:%M"
        if mode == "tz":
            local = when.astimezone(OFFSET)
            return local.strftime(pattern) + "+05:30"
        return when.strftime(pattern) + "Z"

    def uk_rows(
        self, start: datetime, end: datetime, mode: str, *, actuals: bool
    ) -> list[dict[str, Any]]:
        rows = []
        at = floor(start, SLOT)
        while at < end:
            value = uk_value(at)
            actual = value + 3 if actuals and at + SLOT <= self.now else None
            intensity: dict[str, Any] = {"forecast": value, "index": _index(value)}
            if actuals:
                intensity["actual"] = actual
            rows.append(
                {
                    "from": self.fmt(at, mode),
                    "to": self.fmt(at + SLOT, mode),
                    "intensity": intensity,
                }
            )
            at += SLOT
        return self.shape(rows, mode)

    def shape(self, rows: list[dict[str, Any]], mode: str) -> list[dict[str, Any]]:
        if mode == "empty":
            return []
        if mode == "short":
            return rows[:2]
        return rows

    def uk(self, path: str, mode: str) -> Any:
        parts = path.strip("/").split("/")
        regional = parts[0] == "regional"
        if regional and parts[1] == "regionid":  # /regional/regionid/{id}: data is a list
            at = floor(self.now, SLOT)
            rows = self.uk_rows(at, at + SLOT, mode, actuals=False)
            return {"data": [{"regionid": int(parts[2]), "shortname": "Test", "data": rows}]}
        base = parts[2:] if regional else parts[1:]
        start = parse_time(base[0])
        span = base[1]
        if span == "fw48h":
            end = start + timedelta(hours=48)
            rows = self.uk_rows(start, end, mode, actuals=not regional)
        else:
            end = parse_time(span)
            # like the live API, a range also returns the half-hour that ends at its start
            rows = self.uk_rows(start - SLOT, end, mode, actuals=not regional)
        if not regional:
            return {"data": rows}
        kind, value = base[2], base[3]
        region: dict[str, Any] = {"regionid": 13 if kind == "postcode" else int(value)}
        if kind == "postcode":
            region["postcode"] = value
        region.update({"dnoregion": "Test DNO", "shortname": "Test", "data": rows})
        return {"data": region}

    def em(self, path: str, query: dict[str, str], mode: str) -> Any:
        step = {"5_minutes": 5, "15_minutes": 15, "hourly": 60}[
            query.get("temporalGranularity", "hourly")
        ]
        delta = timedelta(minutes=step)
        if path.endswith("/forecast"):
            start = floor(self.now, delta)
            end = start + timedelta(hours=int(query.get("horizonHours", "24")))
        elif path.endswith("/history"):
            end = floor(self.now, delta)
            start = end - timedelta(hours=24)
        else:
            start, end = parse_time(query["start"]), parse_time(query["end"])
        points = []
        at = start
        while at < end:
            points.append(
                {
                    "zone": query.get("zone", "XX"),
                    "carbonIntensity": uk_value(at)
                    * self.zone_scale.get(query.get("zone", ""), 1.0),
                    "datetime": self.fmt(at, mode, seconds=True),
                    "emissionFactorType": query.get("emissionFactorType", "lifecycle"),
                }
            )
            at += delta
        key = {"forecast": "forecast", "history": "history"}.get(path.rsplit("/", 1)[-1], "data")
        return {"zone": query.get("zone"), key: self.shape(points, mode)}

    def wt(self, query: dict[str, str], mode: str) -> Any:
        start = floor(self.now, timedelta(minutes=5))
        if "start" in query:
            start, end = parse_time(query["start"]), parse_time(query["end"])
        else:
            end = start + timedelta(hours=int(query.get("horizon_hours", "24")))
        points = []
        at = start
        while at < end:
            points.append(
                {"point_time": self.fmt(at, mode, seconds=True), "value": 2 * uk_value(at)}
            )
            at += timedelta(minutes=5)
        return {
            "data": self.shape(points, mode),
            "meta": {
                "units": "lbs_co2_per_mwh",
                "data_point_period_seconds": 300,
                "region": query.get("region"),
                "signal_type": query.get("signal_type"),
            },
        }


def _index(value: float) -> str:
    for limit, name in ((100, "very low"), (150, "low"), (210, "moderate"), (250, "high")):
        if value < limit:
            return name
    return "very high"


def _handler(server: GridServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            split = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(split.query).items()}
            with server._lock:
                server.requests.append(self.path)
                server.headers.append({k.lower(): v for k, v in self.headers.items()})
            server.arrived.set()
            path = split.path
            if path == "/login":
                self.login()
                return
            mode = server.next_mode()
            if mode == "hang":
                server._stop.wait(60)
                return
            if mode == "late" and server._stop.wait(server.delay):
                return
            if mode in ("500", "503"):
                self.send(int(mode), {"error": "server error"})
                return
            if mode == "429":
                self.send(
                    429, {"message": "too many requests"}, {"Retry-After": server.retry_after}
                )
                return
            if mode == "401":
                self.send(401, {"message": "unauthorized"})
                return
            if server.echo:
                sent = self.headers.get("auth-token") or self.headers.get("authorization")
                self.send(400, {"message": f"token {sent} is not allowed here"})
                return
            if path.startswith("/v3/carbon-intensity/"):
                if self.headers.get("auth-token") != EM_TOKEN:
                    self.send(401, {"message": "invalid token"})
                    return
                payload = server.em(path, query, mode)
            elif path.startswith(("/v3/forecast", "/v3/historical")):
                auth = self.headers.get("authorization", "")
                if not auth.startswith("Bearer ") or auth[7:] not in server.wt_tokens:
                    self.send(401, {"error": "token expired"})
                    return
                payload = server.wt(query, mode)
            elif path.startswith(("/intensity", "/regional")):
                payload = server.uk(path, mode)
            else:
                self.send(404, {"error": f"no route {path}"})
                return
            if mode == "schema":
                payload = {"data": {"unexpected": True}, "forecast": "nope", "meta": {}}
            if mode in ("overlap", "huge") and isinstance(payload.get("data"), list):
                rows = payload["data"]
                if mode == "overlap":  # the second half-hour as a whole hour: it overlaps
                    rows[1]["to"] = rows[2]["to"]
                else:
                    rows[0]["intensity"]["forecast"] = 10**400
            body = json.dumps(payload).encode()
            if mode == "302":
                self.send(302, body, {"Location": f"{server.url}/moved{self.path}"})
                return
            if mode == "malformed":
                body = b"<html>502 Bad Gateway</html>"
            if mode == "truncated-json":
                body = body[: len(body) // 2]
            if mode == "truncated":
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            if mode == "slow":
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                for i in range(0, len(body), 16):
                    try:
                        self.wfile.write(body[i : i + 16])
                        self.wfile.flush()
                    except OSError:
                        return
                    if server._stop.wait(0.02):
                        return
                return
            self.send(200, body)

        def login(self) -> None:
            expected = base64.b64encode(f"{WT_USER}:{WT_PASSWORD}".encode()).decode()
            if self.headers.get("authorization") != f"Basic {expected}":
                self.send(403, {"error": "bad credentials"})
                return
            with server._lock:
                server.logins += 1
                token = f"wt-bearer-{server.logins:04d}-9a7e"
                server.wt_tokens.add(token)
            self.send(200, {"token": token})

        def send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
            body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            with contextlib.suppress(OSError):
                self.wfile.write(body)

    return Handler


if __name__ == "__main__":  # pragma: no cover
    server = GridServer().start()
    if len(sys.argv) > 1:
        server.now = parse_time(sys.argv[1])
    print(f"PORT {server.port}", flush=True)
    try:
        sys.stdin.read()  # serve until the parent closes our stdin
    finally:
        server.stop()
