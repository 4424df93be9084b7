"""How a session ends when it is left in odd ways (issue 17): from another task, from an
async generator closed early; and what ``@carbon_aware`` refuses to wrap."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Iterator

import anyio
import pytest

from ecoasync import EventBus, Policy, carbon_aware, carbon_session
from ecoasync.events import Completed, Event
from ecoasync.testing import VirtualClock
from tests.llm_helpers import grid

GRID = Policy(provider=grid(200.0))


async def test_a_session_left_from_another_task_still_completes(
    bus: EventBus, clock: VirtualClock
) -> None:
    # it raised ValueError (a ContextVar token from another Context) and emitted no Completed
    seen: list[Event] = []
    bus.subscribe(seen.append)
    manager = carbon_session(GRID, bus=bus)
    session = await manager.__aenter__()
    async with anyio.create_task_group() as tg:
        tg.start_soon(manager.__aexit__, None, None, None)
    assert [e.kind for e in seen] == ["planned", "started", "completed"]
    assert session.record is not None and session.record.status == "completed"


async def test_a_session_in_an_async_generator_closed_early_is_cancelled(
    bus: EventBus, clock: VirtualClock
) -> None:
    # it ended as "failed": GeneratorExit is the generator being cancelled
    done: list[Completed] = []
    bus.subscribe(done.append, Completed)

    async def numbers() -> AsyncGenerator[int, None]:
        async with carbon_session(GRID, bus=bus):
            for n in range(10):
                yield n

    stream = numbers()
    assert await stream.__anext__() == 0
    await stream.aclose()
    assert [(c.status, c.record.error) for c in done] == [("cancelled", None)]


def test_carbon_aware_refuses_generator_functions_when_decorating() -> None:
    # a generator's body ran outside its session (sync) or raised inside a loop (async)
    def words() -> Iterator[str]:
        yield "w"

    async def chunks() -> AsyncIterator[str]:
        yield "c"

    for func in (words, chunks):
        with pytest.raises(TypeError, match=r"cannot wrap the generator function .*(chunks|words)"):
            carbon_aware(func)
        with pytest.raises(TypeError, match="open a session around the work inside it"):
            carbon_aware(max_delay="1h")(func)
