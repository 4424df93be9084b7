"""Energy and environmental impacts of one LLM call, from EcoLogits' model.

EcoLogits is imported lazily (the first time a call is measured) and used only through its
pure functions, ``llm_impacts`` and ``compute_llm_impacts``: never ``EcoLogits.init``, which
patches SDKs process-wide and cannot be undone. Results are cached by (provider, model,
output tokens, latency in milliseconds, zone), so repeated shapes of call cost a dict lookup.
"""

from __future__ import annotations

import functools
import logging
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import anyio.to_thread

from .._checks import is_number

__all__ = [
    "ElectricityMix",
    "Impacts",
    "electricity_mix",
    "load",
    "lookup",
    "register_model",
    "registered_models",
    "unregister_model",
    "zone_to_mix_zone",
]

CACHE_SIZE = 4096


@dataclass(frozen=True, slots=True, kw_only=True)
class ElectricityMix:
    """Impact factors of a grid's electricity, per kWh (EcoLogits' units, except carbon).

    ``gwp_g_per_kwh`` is gCO2eq/kWh; ``adpe_kgsbeq_per_kwh`` antimony-equivalent kg/kWh;
    ``pe_mj_per_kwh`` primary energy MJ/kWh; ``wue_l_per_kwh`` water L/kWh. Defaults for the
    three non-carbon factors are EcoLogits' world averages.
    """

    zone: str
    gwp_g_per_kwh: float
    adpe_kgsbeq_per_kwh: float = 1.349e-08
    pe_mj_per_kwh: float = 2.5871
    wue_l_per_kwh: float = 3.908

    def __post_init__(self) -> None:
        if not isinstance(self.zone, str) or not self.zone:
            raise ValueError(f"ElectricityMix.zone must be a non-empty string, got {self.zone!r}")
        for name in ("gwp_g_per_kwh", "adpe_kgsbeq_per_kwh", "pe_mj_per_kwh", "wue_l_per_kwh"):
            value = getattr(self, name)
            if not is_number(value) or not math.isfinite(value) or value < 0:
                raise ValueError(
                    f"ElectricityMix.{name} must be a finite number >= 0, got {value!r}"
                )


@dataclass(frozen=True, slots=True, kw_only=True)
class _CustomModel:
    name: str
    provider: str | None
    total_params_b: float
    active_params_b: float
    pue: float
    wue: float
    mix: ElectricityMix | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Impacts:
    """One call's impacts, in ecoasync's units (kWh, g, kgSbeq, MJ, L).

    ``usage_gwp_g`` is EcoLogits' usage-phase carbon at its own mix (ecoasync charges its own
    grid intensity instead); ``mix`` is the custom model's electricity mix, if registered
    with one. ``ecologits`` is EcoLogits' own output object (for ``response.impacts``).
    """

    known: bool
    model: str
    energy_kwh: float = 0.0
    energy_kwh_min: float = 0.0
    energy_kwh_max: float = 0.0
    usage_gwp_g: float = 0.0
    embodied_gwp_g: float = 0.0
    adpe_usage_kgsbeq: float = 0.0
    adpe_embodied_kgsbeq: float = 0.0
    pe_usage_mj: float = 0.0
    pe_embodied_mj: float = 0.0
    water_usage_l: float = 0.0
    water_embodied_l: float = 0.0
    mix: ElectricityMix | None = None
    ecologits: Any = None


_custom: dict[tuple[str | None, str], _CustomModel] = {}
_cache: OrderedDict[tuple[str, tuple[str, ...], int, int, str | None], Impacts] = OrderedDict()
_cache_lock = threading.Lock()


def _check_params(name: str, value: object) -> float:
    if not is_number(value) or not math.isfinite(value) or value <= 0:
        raise ValueError(
            f"{name} must be a positive number of billions of parameters, got {value!r}"
        )
    return float(value)


def register_model(
    name: str,
    *,
    total_params_b: float,
    active_params_b: float | None = None,
    provider: str | None = None,
    pue: float = 1.2,
    wue: float = 0.569,
    mix: ElectricityMix | None = None,
) -> None:
    """Teach ecoasync the size of a model EcoLogits does not know (self-hosted, fine-tuned...).

    ``total_params_b`` and ``active_params_b`` are billions of parameters: equal (or omit
    ``active_params_b``) for a dense model, active < total for a mixture-of-experts.
    ``provider`` limits the entry to one provider name (``"openai"``, ``"anthropic"``, or
    what you pass to ``record_call``); ``None`` matches any. ``pue``/``wue`` describe the data
    centre; ``mix`` its electricity (used for water, primary energy and metals, and for carbon
    when the session has no forecast). A registered model wins over EcoLogits' own entry.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty model id, got {name!r}")
    total = _check_params("total_params_b", total_params_b)
    active = total if active_params_b is None else _check_params("active_params_b", active_params_b)
    if active > total:
        raise ValueError(
            f"active_params_b ({active:g}) cannot exceed total_params_b ({total:g}); "
            "for a dense model leave active_params_b out"
        )
    for label, value in (("pue", pue), ("wue", wue)):
        if not is_number(value) or not value >= 0:
            raise ValueError(f"{label} must be a number >= 0, got {value!r}")
    if pue < 1:
        raise ValueError(f"pue is at least 1 (1.0 = no overhead), got {pue!r}")
    if mix is not None and not isinstance(mix, ElectricityMix):
        raise TypeError(f"mix must be an ecoasync.ElectricityMix or None, got {mix!r}")
    _custom[(provider, name)] = _CustomModel(
        name=name,
        provider=provider,
        total_params_b=total,
        active_params_b=active,
        pue=float(pue),
        wue=float(wue),
        mix=mix,
    )
    clear_cache()


def unregister_model(name: str, *, provider: str | None = None) -> None:
    """Forget a model registered with :func:`register_model` (no error if absent)."""
    _custom.pop((provider, name), None)
    clear_cache()


def registered_models() -> list[str]:
    return sorted({name for _, name in _custom})


def clear_cache() -> None:
    with _cache_lock:
        _cache.clear()


# --- EcoLogits, imported lazily ---


@functools.cache
def _ecologits() -> Any:
    """Import EcoLogits' pure parts once, undoing its global ``logging.setLoggerClass``."""
    logger_class = logging.getLoggerClass()
    try:
        from ecologits.electricity_mix_repository import electricity_mixes
        from ecologits.impacts.llm import compute_llm_impacts
        from ecologits.model_repository import models
        from ecologits.tracers import utils
    finally:
        logging.setLoggerClass(logger_class)  # ecologits.log sets its class for every logger
    ecologits_log = logging.getLogger("ecologits")
    if not ecologits_log.handlers:
        # its precision warnings would otherwise go to stderr through logging's last resort;
        # they still reach any handler the application configures (propagation is kept)
        ecologits_log.addHandler(logging.NullHandler())
    return utils, compute_llm_impacts, electricity_mixes, models


async def load() -> None:
    """Import EcoLogits in a worker thread unless done: the import takes 0.1-0.3 s, which
    the first call measured on an event loop would otherwise block it for."""
    if _ecologits.cache_info().currsize == 0:
        await anyio.to_thread.run_sync(_ecologits)


# ISO 3166 alpha-2 → alpha-3 for grid zones (Electricity Maps, UK CI API: "GB", "DE", "US-CAL-CISO").
_ALPHA3 = {
    "AR": "ARG", "AT": "AUT", "AU": "AUS", "BE": "BEL", "BG": "BGR", "BR": "BRA", "CA": "CAN",
    "CH": "CHE", "CL": "CHL", "CN": "CHN", "CY": "CYP", "CZ": "CZE", "DE": "DEU", "DK": "DNK",
    "EE": "EST", "ES": "ESP", "FI": "FIN", "FR": "FRA", "GB": "GBR", "GR": "GRC", "HK": "HKG",
    "HR": "HRV", "HU": "HUN", "ID": "IDN", "IE": "IRL", "IL": "ISR", "IN": "IND", "IS": "ISL",
    "IT": "ITA", "JP": "JPN", "KR": "KOR", "LT": "LTU", "LU": "LUX", "LV": "LVA", "MT": "MLT",
    "MX": "MEX", "MY": "MYS", "NL": "NLD", "NO": "NOR", "NZ": "NZL", "PL": "POL", "PT": "PRT",
    "RO": "ROU", "SE": "SWE", "SG": "SGP", "SI": "SVN", "SK": "SVK", "TH": "THA", "TR": "TUR",
    "TW": "TWN", "UA": "UKR", "UK": "GBR", "US": "USA", "ZA": "ZAF",
}  # fmt: skip


@functools.lru_cache(maxsize=256)
def zone_to_mix_zone(zone: str | None) -> str | None:
    """EcoLogits' zone (ISO alpha-3, or ``WOR``) for a grid zone like ``GB`` or ``US-CAL-CISO``."""
    if not zone:
        return None
    _, _, mixes, _ = _ecologits()
    code = zone.upper()
    if mixes.find_electricity_mix(zone=code) is not None:
        return code
    # "US-CAL-CISO", "SE_SE3", and the UK API's "GB:region-3" or "GB:postcode-RG10"
    head = code.split(":", 1)[0].split("-", 1)[0].split("_", 1)[0]
    if mixes.find_electricity_mix(zone=head) is not None:
        return head
    return _ALPHA3.get(head)


@functools.lru_cache(maxsize=256)
def electricity_mix(zone: str | None) -> ElectricityMix:
    """EcoLogits' electricity mix for ``zone`` (a grid zone or ISO alpha-3), else the world's."""
    _, _, mixes, _ = _ecologits()
    code = zone_to_mix_zone(zone) or "WOR"
    found = mixes.find_electricity_mix(zone=code) or mixes.find_electricity_mix(zone="WOR")
    return ElectricityMix(
        zone=found.zone,
        gwp_g_per_kwh=found.gwp * 1000.0,
        adpe_kgsbeq_per_kwh=found.adpe,
        pe_mj_per_kwh=found.pe,
        wue_l_per_kwh=found.wue,
    )


def _split(value: Any) -> tuple[float, float, float]:
    """(mean, min, max) of an EcoLogits impact (a float or a RangeValue), 0 for None."""
    if value is None:
        return 0.0, 0.0, 0.0
    inner = getattr(value, "value", value)
    if hasattr(inner, "min") and hasattr(inner, "max"):
        low, high = float(inner.min), float(inner.max)
        return (low + high) / 2, low, high
    number = float(inner)
    return number, number, number


def _mean(value: Any) -> float:
    return _split(value)[0]


def _convert(model: str, out: Any, mix: ElectricityMix | None) -> Impacts:
    energy, energy_min, energy_max = _split(out.energy)
    usage, embodied = out.usage, out.embodied
    return Impacts(
        known=True,
        model=model,
        energy_kwh=energy,
        energy_kwh_min=energy_min,
        energy_kwh_max=energy_max,
        usage_gwp_g=_mean(usage.gwp) * 1000.0 if usage else 0.0,
        embodied_gwp_g=_mean(embodied.gwp) * 1000.0 if embodied else 0.0,
        adpe_usage_kgsbeq=_mean(usage.adpe) if usage else 0.0,
        adpe_embodied_kgsbeq=_mean(embodied.adpe) if embodied else 0.0,
        pe_usage_mj=_mean(usage.pe) if usage else 0.0,
        pe_embodied_mj=_mean(embodied.pe) if embodied else 0.0,
        water_usage_l=_mean(getattr(usage, "wcf", None)) if usage else 0.0,
        water_embodied_l=_mean(getattr(embodied, "wcf", None)) if embodied else 0.0,
        mix=mix,
        ecologits=out,
    )


def _custom_for(provider: str, model: str) -> _CustomModel | None:
    return _custom.get((provider, model)) or _custom.get((None, model))


def _compute(
    provider: str, candidates: tuple[str, ...], tokens: int, latency_s: float, zone: str | None
) -> Impacts:
    utils, compute_llm_impacts, mixes, models = _ecologits()
    for model in candidates:
        custom = _custom_for(provider, model)
        if custom is not None:
            mix = custom.mix or electricity_mix(zone)
            raw = compute_llm_impacts(
                model_active_parameter_count=custom.active_params_b,
                model_total_parameter_count=custom.total_params_b,
                output_token_count=tokens,
                request_latency=latency_s,
                if_electricity_mix_adpe=mix.adpe_kgsbeq_per_kwh,
                if_electricity_mix_pe=mix.pe_mj_per_kwh,
                if_electricity_mix_gwp=mix.gwp_g_per_kwh / 1000.0,
                if_electricity_mix_wue=mix.wue_l_per_kwh,
                datacenter_pue=custom.pue,
                datacenter_wue=custom.wue,
            )
            out = utils.ImpactsOutput.model_validate(raw.model_dump())
            return _convert(model, out, custom.mix)
        if provider in utils.PROVIDER_CONFIG_MAP and models.find_model(provider, model):
            out = utils.llm_impacts(
                provider,
                model,
                tokens,
                latency_s,
                electricity_mix_zone=zone
                if zone and mixes.find_electricity_mix(zone=zone)
                else None,
            )
            if out.energy is not None:
                return _convert(model, out, None)
    return Impacts(known=False, model=candidates[0] if candidates else "")


def lookup(
    provider: str,
    candidates: tuple[str, ...],
    output_tokens: int,
    latency_s: float,
    zone: str | None = None,
) -> Impacts:
    """The impacts of a call: the first of ``candidates`` that EcoLogits (or the registry)
    knows, else an unknown result with zero energy. ``latency_s`` is used to the millisecond;
    ``zone`` (ISO alpha-3) picks the mix for water, primary energy and metals."""
    latency_ms = max(round(latency_s * 1000), 0)
    key = (provider, candidates, max(output_tokens, 0), latency_ms, zone)
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
            return hit
    result = _compute(provider, candidates, max(output_tokens, 0), latency_ms / 1000.0, zone)
    with _cache_lock:
        _cache[key] = result
        if len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return result
