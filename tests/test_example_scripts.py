"""Every example runs as written, offline, as a user would run it (a subprocess), with time
virtualised inside; and the dashboard and the custom sink are also checked in-process."""

from __future__ import annotations

import ast
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import ecoasync
from tests.examples_util import EXAMPLES, load_example, run_example, run_python


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the examples run on asyncio (uvicorn, rich's Live thread)


def scripts() -> list[str]:
    """Every runnable example: the top-level scripts and each package's demo."""
    found = [p.name for p in EXAMPLES.glob("*.py") if "__main__" in p.read_text()]
    found += [f"{p.parent.name}/demo.py" for p in EXAMPLES.glob("*/demo.py")]
    return sorted(found)


def test_every_example_is_run_by_a_test() -> None:
    tested = {
        "quickstart.py",  # in test_examples.py
        "agent_demo.py",  # in test_instrument_example.py
        "live_dashboard.py",
        "custom_sink.py",
        "service/demo.py",
        "batch_job.py",
        "agent.py",
        "routing.py",
    }
    missing = set(scripts()) - tested
    assert not missing, f"examples without a test: {sorted(missing)}"


def test_service_demo(tmp_path: Path) -> None:
    pytest.importorskip("uvicorn")
    telemetry = tmp_path / "service.jsonl"
    out = run_example("service/demo.py", str(telemetry))
    assert "shutting down with one job still waiting" in out
    statuses = [
        json.loads(line)["status"]
        for line in telemetry.read_text().splitlines()
        if json.loads(line)["event"] == "completed"
    ]
    assert statuses == ["completed", "completed", "cancelled"]
    assert re.search(r"cancelled\s+waited 4\.0 h, never ran", out)


def test_live_dashboard_runs_and_ends_by_itself() -> None:
    pytest.importorskip("rich")
    out = run_example("live_dashboard.py")
    for name in ("chat-reply", "ticket-summaries", "nightly-eval", "translations"):
        assert name in out
    assert "downgraded" in out  # the chat reply on the dirty evening grid
    assert "tripped" in out and "aborted" in out  # the nightly evaluation's budget
    assert "21:00Z +4.0h" in out  # the summaries wait for the evening dip


async def test_live_dashboard_board_follows_every_session() -> None:
    pytest.importorskip("rich")
    dashboard = load_example("live_dashboard.py", "live_dashboard")
    board = await dashboard.main(pace=0.0)
    rows = {row.name: row for row in board.rows.values()}
    assert board.completed == len(dashboard.JOBS) == len(rows)
    assert rows["chat-reply"].downgrades == 3
    assert rows["nightly-eval"].status == "aborted"
    assert rows["nightly-eval"].tripped and rows["nightly-eval"].refused == 1
    assert rows["nightly-eval"].total_g >= 0.2
    assert rows["ticket-summaries"].planned < rows["ticket-summaries"].now


def test_custom_sink_example() -> None:
    out = run_example("custom_sink.py")
    delivered, dropped, lost = map(
        int,
        re.search(r"delivered (\d+), dropped (\d+) .*, lost (\d+)", out).groups(),  # type: ignore[union-attr]
    )
    assert delivered + dropped + lost == 300
    assert dropped > 0  # the stalled webhook filled the queue
    assert f"the webhook received {delivered} events" in out
    assert "dead webhook: 1 failed posts, 20 events lost" in out


async def test_custom_sink_never_blocks_and_accounts_for_every_event() -> None:
    example = load_example("custom_sink.py", "custom_sink")
    with example.receiver() as hook:
        hook.open.clear()  # the webhook hangs for the whole workload
        bus = ecoasync.EventBus()
        async with example.WebhookSink(hook.url, max_queue=10, batch=5) as sink:
            bus.subscribe(sink)
            await example.workload(bus, 50)
            assert sink.dropped >= 50 - 10 - 5  # at most a queue and a batch in flight
            hook.open.set()
        assert sink.delivered == len(hook.received) == 50 - sink.dropped
        assert sink.failures == sink.lost == 0
        assert bus.failures == 0


async def test_custom_sink_close_is_bounded_when_the_webhook_hangs() -> None:
    example = load_example("custom_sink.py", "custom_sink")
    with example.receiver() as hook:
        hook.open.clear()
        bus = ecoasync.EventBus()
        sink = await example.WebhookSink(hook.url, max_queue=10, batch=5).__aenter__()
        bus.subscribe(sink)
        await example.workload(bus, 8)
        await sink.aclose(deadline=0.05)
        assert sink.delivered == 0
        assert sink.lost == 8
        await example.workload(bus, 1)  # after close: counted as dropped, never raises
        assert sink.dropped == 1
        assert bus.failures == 0


needs_instrumentation = pytest.mark.skipif(
    not hasattr(ecoasync, "instrument"), reason="needs the SDK instrumentation (issue 4)"
)


def completed_records(path: Path) -> dict[str, dict[str, object]]:
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    return {line["session_name"]: line["record"] for line in lines if line["event"] == "completed"}


def printed_report(out: str, tmp_path: Path, name: str) -> tuple[Path, list[str]]:
    """The telemetry file and the ``ecoasync report`` command the example printed."""
    commands = [line[2:] for line in out.splitlines() if line.startswith("$ ")]
    assert len(commands) == 1, out
    args = shlex.split(commands[0])
    assert args[:2] == ["ecoasync", "report"]
    telemetry = Path(args[2])
    assert telemetry == tmp_path / "ecoasync-examples" / name, "the real path, not a bare name"
    return telemetry, args[1:]


def check_printed_report(args: list[str], tmp_path: Path, title: str) -> None:
    """The printed command works after the example has ended, from anywhere."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = run_python("-m", "ecoasync", *args, cwd=elsewhere)
    assert done.returncode == 0, done.stderr
    assert title in done.stdout


@needs_instrumentation
def test_batch_job(tmp_path: Path) -> None:
    pytest.importorskip("openai")
    out = run_example("batch_job.py", env={"TMPDIR": str(tmp_path)})
    assert "downgraded gpt-4o -> gpt-4o-mini" in out  # the urgent digest at 18:00
    assert "summarise_tickets: waiting 6h00m" in out  # the plan moves it to the night
    assert "budget tripped" in out and "refused a gpt-4o call" in out
    telemetry, command = printed_report(out, tmp_path, "nightly.jsonl")
    assert command[2:] == ["--by", "model"]
    assert out.index("$ ecoasync report") < out.index("By model")  # the command, then its output
    assert "By model" in out and "gpt-4o-mini" in out  # the report at the end
    records = completed_records(telemetry)
    assert records["urgent_digest"]["downgrades"] == 1
    assert records["summarise_tickets"]["delay_s"] == 6 * 3600
    assert records["summarise_tickets"]["calls"] == 5
    reembed = records["reembed"]
    assert reembed["status"] == "aborted" and reembed["budget_tripped"] is True
    assert reembed["refused_calls"] == 1
    assert float(reembed["emitted_g"]) >= float(reembed["budget_g"])  # type: ignore[arg-type]
    check_printed_report(command, tmp_path, "By model")


@needs_instrumentation
def test_agent(tmp_path: Path) -> None:
    pytest.importorskip("openai")
    pytest.importorskip("anthropic")
    out = run_example("agent.py", env={"TMPDIR": str(tmp_path)})
    assert "round 3" in out and "By tag" in out
    telemetry, command = printed_report(out, tmp_path, "agent.jsonl")
    assert command[2:] == ["--by", "tag"]
    record = completed_records(telemetry)["research-agent"]
    by_tag = record["by_tag"]
    assert isinstance(by_tag, dict)
    assert {tag: usage["calls"] for tag, usage in by_tag.items()} == {
        "planner": 1,
        "writer": 3,
        "critic": 3,
    }
    assert record["calls"] == 7
    total = sum(usage["emitted_g"] for usage in by_tag.values())
    assert abs(total - float(record["emitted_g"])) < 1e-9  # type: ignore[arg-type]
    assert record["delay_s"] == 3 * 3600
    check_printed_report(command, tmp_path, "By tag")


def test_an_explicit_telemetry_path_is_used_as_given(tmp_path: Path) -> None:
    pytest.importorskip("openai")
    telemetry = tmp_path / "my nightly.jsonl"  # a space: the printed command quotes it
    out = run_example("batch_job.py", str(telemetry), env={"TMPDIR": str(tmp_path / "none")})
    assert f"$ ecoasync report '{telemetry}' --by model" in out
    assert completed_records(telemetry)["reembed"]["status"] == "aborted"


EXTRAS = [
    ("batch_job.py", ["openai"], "openai extra", "openai"),
    ("routing.py", ["openai"], "openai extra", "openai"),
    ("agent.py", ["anthropic"], "openai and anthropic extras", "openai,anthropic"),
    ("agent.py", ["openai"], "openai and anthropic extras", "openai,anthropic"),
    ("agent_demo.py", ["openai", "anthropic"], "openai and anthropic extras", "openai,anthropic"),
    ("live_dashboard.py", ["rich"], "rich extra", "rich"),
    ("service/demo.py", ["starlette"], "examples and openai extras", "examples,openai"),
    ("service/demo.py", ["uvicorn"], "examples and openai extras", "examples,openai"),
    ("service/demo.py", ["openai"], "examples and openai extras", "examples,openai"),
    ("service/app.py", ["starlette"], "examples and openai extras", "examples,openai"),
]


@pytest.mark.parametrize(("example", "missing", "needs", "extras"), EXTRAS)
def test_an_example_without_its_extra_says_which_to_install(
    example: str, missing: list[str], needs: str, extras: str
) -> None:
    done = run_python(str(EXAMPLES / example), block=missing)
    install = f'pip install "ecoasync[{extras}]"'
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == f"examples/{example} needs the {needs}: {install}\n"
    docstring = ast.get_docstring(ast.parse((EXAMPLES / example).read_text("utf-8")))
    assert docstring is not None
    assert install in " ".join(docstring.split("\n\n")[:2]), "said at the top of the example"


def test_every_example_that_needs_an_extra_names_it() -> None:
    named = {example for example, *_ in EXTRAS}
    for script in scripts():
        text = (EXAMPLES / script).read_text("utf-8")
        if "FakeLLM" in text or "from rich" in text or "from app import" in text:
            assert script in named, f"{script} needs an extra: test its hint"


def test_routing(tmp_path: Path) -> None:
    pytest.importorskip("openai")
    telemetry = tmp_path / "routing.jsonl"
    out = run_example("routing.py", str(telemetry))
    assert "stockholm failed" in out and "now paris" in out  # the outage, fallen over
    assert "max_share 0.5" in out  # jobs spread over the regions
    assert "a chat reply that cannot wait goes to" in out
    assert "By route (baseline: at once, at home)" in out
    records = completed_records(telemetry)
    assert {r["route"] for r in records.values()} == {"stockholm", "paris"}
    assert all(float(r["emitted_g"]) < float(r["baseline_g"]) for r in records.values())  # type: ignore[arg-type]
    failed = [r for r in records.values() if r["failed_routes"]]
    assert failed and all(r["failed_routes"] == ["stockholm"] for r in failed)
    lines = [json.loads(line) for line in telemetry.read_text().splitlines()]
    routed = [line for line in lines if line["event"] == "routed"]
    assert {line["reason"] for line in routed} == {"planned", "failover"}
    assert all("target" not in line["choice"]["route"] for line in routed)
    report = subprocess.run(
        [sys.executable, "-m", "ecoasync", "report", str(telemetry), "--by", "route", "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    by_route = {row["route"]: row for row in json.loads(report.stdout)["by_route"]}
    assert set(by_route) == {"stockholm", "paris"}
    assert by_route["stockholm"]["water_l"] > 0 and by_route["paris"]["basis"] == ["average/direct"]
    assert sum(row["sessions"] for row in by_route.values()) == 8
