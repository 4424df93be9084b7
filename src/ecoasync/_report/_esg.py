"""The ESG export: per-period totals in the shape a GHG inventory takes."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final

from ._load import Loaded
from ._rows import Row
from ._summary import data_quality, select

__all__ = ["ESG_COLUMNS", "esg_csv", "esg_records", "parse_period", "periods_in"]

GHG_SCOPE: Final = 3
GHG_CATEGORY: Final = 1
GHG_CATEGORY_NAME: Final = "Purchased goods and services"
METHOD: Final = (
    "Energy per LLM call estimated with EcoLogits (ecologits.ai) from the provider, model, "
    "output tokens and latency, as a mean with a min-max range. Usage emissions = energy x "
    "carbon intensity of the electricity grid (gCO2eq/kWh) in the time slot the call ran, "
    "location-based, from the forecast provider named in emission_factor_sources (its "
    "measured value where published, else its forecast). Embodied emissions (hardware "
    "manufacturing) from EcoLogits' embodied share, reported apart: shifting work in time "
    "does not change them. avoided = emissions at the intensity when the work was submitted "
    "minus emissions when it ran: informational, not an inventory reduction."
)
_PERIOD = re.compile(r"^(\d{4})(?:-(?:Q([1-4])|(\d{2})))?$")


def parse_period(text: str) -> tuple[str, datetime, datetime]:
    """``2026`` (a year), ``2026-Q1`` (a quarter) or ``2026-03`` (a month) → (label, start,
    end) in UTC, end exclusive. Raises ``ValueError`` naming the accepted forms."""
    match = _PERIOD.match(text.strip().upper())
    month = int(match.group(3)) if match and match.group(3) else None
    if match is None or (month is not None and not 1 <= month <= 12):
        raise ValueError(
            f"a period is a year, a quarter or a month, like 2026, 2026-Q1 or 2026-03; got {text!r}"
        )
    year = int(match.group(1))
    if match.group(2):
        q = int(match.group(2))
        start = datetime(year, 3 * q - 2, 1, tzinfo=UTC)
        end = datetime(year + (q == 4), 1 if q == 4 else 3 * q + 1, 1, tzinfo=UTC)
        return f"{year}-Q{q}", start, end
    if month is not None:
        start = datetime(year, month, 1, tzinfo=UTC)
        end = datetime(year + (month == 12), 1 if month == 12 else month + 1, 1, tzinfo=UTC)
        return f"{year}-{month:02d}", start, end
    return f"{year}", datetime(year, 1, 1, tzinfo=UTC), datetime(year + 1, 1, 1, tzinfo=UTC)


def periods_in(rows: Sequence[Row]) -> list[str]:
    """The calendar quarters the rows fall in, in order (the default periods)."""
    return sorted({f"{r.when.year}-Q{(r.when.month - 1) // 3 + 1}" for r in rows})


def esg_records(loaded: Loaded, periods: Sequence[str]) -> list[dict[str, Any]]:
    """One record per period: totals in kgCO2eq and tCO2eq, the GHG Protocol classification,
    the method, the emission-factor sources and the data-quality flags."""
    ids = {r.session_id for r in loaded.rows}
    out = []
    for text in periods:
        label, start, end = parse_period(text)
        every = select(loaded.rows, start, end)
        top = [r for r in every if r.parent_id is None or r.parent_id not in ids]
        usage_g = sum(r.emitted_g for r in top)
        embodied_g = sum(r.embodied_g for r in top)
        baseline_g = sum(r.baseline_g for r in top)
        quality = data_quality(top)
        sources: dict[tuple[str, str, str], int] = {}
        for r in top:
            key = (r.provider or "(none)", r.zone or "(none)", r.signal or "(unknown)")
            sources[key] = sources.get(key, 0) + 1
        forecast_g = quality["intensity_sources"].get("forecast", {}).get("emitted_g", 0.0)
        out.append(
            {
                "period": label,
                "start": start.isoformat().replace("+00:00", "Z"),
                "end": end.isoformat().replace("+00:00", "Z"),
                "ghg_protocol_scope": GHG_SCOPE,
                "ghg_protocol_category": GHG_CATEGORY,
                "ghg_protocol_category_name": GHG_CATEGORY_NAME,
                "sessions": len(top),
                "calls": sum(r.calls for r in top),
                "energy_kwh": sum(r.energy_kwh for r in top),
                "energy_kwh_min": sum(r.energy_kwh_min for r in top),
                "energy_kwh_max": sum(r.energy_kwh_max for r in top),
                "usage_kgco2eq": usage_g / 1e3,
                "usage_tco2eq": usage_g / 1e6,
                "embodied_kgco2eq": embodied_g / 1e3,
                "embodied_tco2eq": embodied_g / 1e6,
                "total_kgco2eq": (usage_g + embodied_g) / 1e3,
                "total_tco2eq": (usage_g + embodied_g) / 1e6,
                "baseline_usage_kgco2eq": baseline_g / 1e3,
                "avoided_usage_kgco2eq": (baseline_g - usage_g) / 1e3,
                "method": METHOD,
                "energy_model_source": "EcoLogits (GenAI Impact), LLM inference impact methodology",
                "emission_factor_sources": [
                    {"provider": p, "zone": z, "signal": s, "sessions": n}
                    for (p, z, s), n in sorted(sources.items())
                ],
                "signal_kinds": quality["signal_kinds"],
                "mixed_signals": quality["mixed_signals"],
                "forecast_only_sessions": quality["forecast_only_sessions"],
                "forecast_only_share_pct": (100.0 * forecast_g / usage_g) if usage_g > 0 else None,
                "mix_fallback_sessions": quality["mix_fallback_sessions"],
                "no_intensity_sessions": quality["no_intensity_sessions"],
                "unknown_models": quality["unknown_models"],
                "unknown_model_sessions": quality["unknown_model_sessions"],
                "imported_sessions": quality["imported_sessions"],
                "embodied_recorded": quality["imported_sessions"] == 0,
            }
        )
    return out


ESG_COLUMNS: Final[tuple[str, ...]] = (
    "period",
    "start",
    "end",
    "ghg_protocol_scope",
    "ghg_protocol_category",
    "ghg_protocol_category_name",
    "sessions",
    "calls",
    "energy_kwh",
    "energy_kwh_min",
    "energy_kwh_max",
    "usage_kgco2eq",
    "usage_tco2eq",
    "embodied_kgco2eq",
    "embodied_tco2eq",
    "total_kgco2eq",
    "total_tco2eq",
    "baseline_usage_kgco2eq",
    "avoided_usage_kgco2eq",
    "emission_factor_sources",
    "signal_kinds",
    "mixed_signals",
    "forecast_only_sessions",
    "forecast_only_share_pct",
    "mix_fallback_sessions",
    "no_intensity_sessions",
    "unknown_models",
    "unknown_model_sessions",
    "imported_sessions",
    "embodied_recorded",
    "energy_model_source",
    "method",
)


_FORMULA = ("=", "+", "-", "@", "\t", "\r")
"""What makes a spreadsheet read a text cell as a formula (OWASP's CSV injection list)."""


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.9g}"
    if isinstance(value, int):
        return str(value)
    text = _text(value)
    # text from telemetry (a provider, a zone, a model) is never a formula: a leading quote
    # makes a spreadsheet show it as it is
    return "'" + text if text.startswith(_FORMULA) else text


def _text(value: object) -> str:
    if isinstance(value, list):
        parts = []
        for item in value:
            if isinstance(item, dict):
                parts.append(
                    f"{item['provider']}/{item['zone']}/{item['signal']} ({item['sessions']})"
                )
            else:
                parts.append(str(item))
        return "; ".join(parts)
    return str(value)


def esg_csv(records: Sequence[dict[str, Any]]) -> str:
    """The records as CSV (one row per period; lists joined with ``; ``)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(ESG_COLUMNS)
    for record in records:
        writer.writerow([_cell(record.get(c)) for c in ESG_COLUMNS])
    return buffer.getvalue()
