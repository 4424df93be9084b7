"""A simulated LLM call, charged to the running session, for examples that run offline.

``await simulated_call("gpt-4o", output_tokens=350)`` does, for a call that is never made,
what ecoasync's OpenAI/Anthropic instrumentation does around a real one: downgrade the model
on a dirty grid (``Downgraded``), refuse it once the budget is spent (``CallRefused`` and
``CarbonBudgetExceeded``), take its energy from EcoLogits' model, charge it at the grid's
intensity (``CallRecorded``, and ``BudgetTripped`` when it crosses the budget). It reaches the
session through the same accounting the instrumentation uses. In your own code, use the real
SDK clients: their calls inside a session are charged for you.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from functools import cache

from ecoasync import CallRecord
from ecoasync._context import call_tags, current

__all__ = ["simulated_call"]


@cache
def _energy_kwh(provider: str, model: str, tokens: int, latency_s: float) -> tuple[float, float]:
    """EcoLogits' (min, max) energy in kWh for one call."""
    from ecologits.tracers.utils import llm_impacts

    # EcoLogits logs its precision warnings; the instrumentation records them, here they go
    logging.getLogger("ecologits").setLevel(logging.ERROR)
    impacts = llm_impacts(provider, model, tokens, latency_s)
    if impacts.energy is None:
        raise ValueError(f"EcoLogits does not know {provider}/{model}")
    value = impacts.energy.value
    if isinstance(value, int | float):
        return float(value), float(value)
    return float(value.min), float(value.max)


async def simulated_call(
    model: str, *, output_tokens: int, latency_s: float = 4.0, provider: str = "openai"
) -> str:
    """Charge one simulated call of ``model`` to the current session; returns the model used."""
    acct = current()
    if acct is None:
        raise RuntimeError("simulated_call() runs inside 'async with ecoasync.carbon_session()'")
    effective, downgraded = acct.choose_model(model)
    if downgraded is not None:
        await acct.bus.emit(downgraded)
    refused = acct.refusal(effective)
    if refused is not None:
        error, event = refused
        await acct.bus.emit(event)
        raise error
    await acct.clock.sleep_until(acct.clock.now() + timedelta(seconds=latency_s))
    low, high = _energy_kwh(provider, effective, output_tokens, latency_s)
    energy = (low + high) / 2
    intensity, source = acct.intensity_now()
    baseline = acct.baseline_intensity if acct.baseline_intensity is not None else intensity
    record = CallRecord(
        provider=provider,
        requested_model=model,
        effective_model=effective,
        output_tokens=output_tokens,
        latency_s=latency_s,
        energy_kwh=energy,
        energy_kwh_min=low,
        energy_kwh_max=high,
        intensity=intensity,
        intensity_source=source,
        emitted_g=energy * (intensity or 0.0),
        baseline_g=energy * (baseline or 0.0),
        downgraded=effective != model,
        tags=call_tags(),
        at=acct.clock.now(),
    )
    for bus, charged in acct.charge(record):
        await bus.emit(charged)
    return effective
