"""Cloud regions → electricity grid zones.

Every provider that takes a grid ``zone`` also takes a cloud region written
``"<cloud>:<region>"``: ``"aws:eu-west-2"`` (GB), ``"gcp:europe-west4"`` (NL),
``"azure:westeurope"`` (NL). Zones are Electricity Maps zone keys (``GB``, ``NL``, ``DE``,
``US-CAL-CISO``, ...). A region that is not in the table fails with the closest matches::

    >>> zone_for("aws:eu-west-2")
    'GB'
    >>> resolve_zone("DE")          # a plain zone passes through
    'DE'

The table maps each region to the grid of the place the provider publishes for it (a
metropolitan area or a state); where a region spans several balancing areas, the one that
serves the data-centre cluster is used (US regions: the balancing authority of the utility that
serves it, e.g. Santee Cooper for ``gcp:us-east1``). Every zone is an Electricity Maps zone key
(checked against its zone list, 2026-11). Corrections are welcome: they are data, not code.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from .._exceptions import UnknownRegionError

__all__ = ["CLOUDS", "UnknownRegionError", "cloud_regions", "resolve_zone", "zone_for"]


_AWS: Final = {
    "us-east-1": "US-MIDA-PJM",  # N. Virginia
    "us-east-2": "US-MIDA-PJM",  # Ohio
    "us-west-1": "US-CAL-CISO",  # N. California
    "us-west-2": "US-NW-BPAT",  # Oregon
    "us-gov-east-1": "US-MIDA-PJM",  # Ohio
    "us-gov-west-1": "US-NW-BPAT",  # Oregon
    "ca-central-1": "CA-QC",  # Montréal
    "ca-west-1": "CA-AB",  # Calgary
    "sa-east-1": "BR-CS",  # São Paulo
    "eu-west-1": "IE",  # Ireland
    "eu-west-2": "GB",  # London
    "eu-west-3": "FR",  # Paris
    "eu-central-1": "DE",  # Frankfurt
    "eu-central-2": "CH",  # Zurich
    "eu-north-1": "SE-SE3",  # Stockholm
    "eu-south-1": "IT-NO",  # Milan
    "eu-south-2": "ES",  # Aragón
    "il-central-1": "IL",  # Tel Aviv
    "me-south-1": "BH",  # Bahrain
    "me-central-1": "AE",  # UAE
    "af-south-1": "ZA",  # Cape Town
    "ap-east-1": "HK",  # Hong Kong
    "ap-south-1": "IN-WE",  # Mumbai
    "ap-south-2": "IN-SO",  # Hyderabad
    "ap-northeast-1": "JP-TK",  # Tokyo
    "ap-northeast-2": "KR",  # Seoul
    "ap-northeast-3": "JP-KN",  # Osaka
    "ap-southeast-1": "SG",  # Singapore
    "ap-southeast-2": "AU-NSW",  # Sydney
    "ap-southeast-3": "ID",  # Jakarta
    "ap-southeast-4": "AU-VIC",  # Melbourne
    "ap-southeast-5": "MY-WM",  # Malaysia
    "ap-southeast-6": "NZ",  # Auckland
    "ap-southeast-7": "TH",  # Bangkok
    "ap-east-2": "TW",  # Taipei
    "mx-central-1": "MX",  # Querétaro
}

_GCP: Final = {
    "us-central1": "US-MIDW-MISO",  # Iowa
    "us-east1": "US-CAR-SC",  # Moncks Corner, South Carolina (Santee Cooper)
    "us-east2": "US-SE-SOCO",  # Georgia
    "us-east7": "US-TEN-TVA",  # Alabama and Tennessee
    "us-central2": "US-CENT-SWPP",  # Oklahoma
    "us-east4": "US-MIDA-PJM",  # N. Virginia
    "us-east5": "US-MIDA-PJM",  # Columbus
    "us-south1": "US-TEX-ERCO",  # Dallas
    "us-west1": "US-NW-BPAT",  # Oregon
    "us-west2": "US-CAL-LDWP",  # Los Angeles
    "us-west3": "US-NW-PACE",  # Salt Lake City
    "us-west4": "US-NW-NEVP",  # Las Vegas
    "northamerica-northeast1": "CA-QC",  # Montréal
    "northamerica-northeast2": "CA-ON",  # Toronto
    "northamerica-south1": "MX",  # Querétaro
    "southamerica-east1": "BR-CS",  # São Paulo
    "southamerica-west1": "CL-SEN",  # Santiago
    "europe-west1": "BE",  # St. Ghislain
    "europe-west2": "GB",  # London
    "europe-west3": "DE",  # Frankfurt
    "europe-west4": "NL",  # Eemshaven
    "europe-west6": "CH",  # Zurich
    "europe-west8": "IT-NO",  # Milan
    "europe-west9": "FR",  # Paris
    "europe-west10": "DE",  # Berlin
    "europe-west12": "IT-NO",  # Turin
    "europe-north1": "FI",  # Hamina
    "europe-north2": "SE-SE3",  # Stockholm
    "europe-central2": "PL",  # Warsaw
    "europe-southwest1": "ES",  # Madrid
    "me-west1": "IL",  # Tel Aviv
    "me-central1": "QA",  # Doha
    "me-central2": "SA",  # Dammam
    "africa-south1": "ZA",  # Johannesburg
    "asia-east1": "TW",  # Changhua
    "asia-east2": "HK",  # Hong Kong
    "asia-northeast1": "JP-TK",  # Tokyo
    "asia-northeast2": "JP-KN",  # Osaka
    "asia-northeast3": "KR",  # Seoul
    "asia-south1": "IN-WE",  # Mumbai
    "asia-south2": "IN-NO",  # Delhi
    "asia-southeast1": "SG",  # Singapore
    "asia-southeast2": "ID",  # Jakarta
    "asia-southeast3": "TH",  # Bangkok
    "australia-southeast1": "AU-NSW",  # Sydney
    "australia-southeast2": "AU-VIC",  # Melbourne
}

_AZURE: Final = {
    "eastus": "US-MIDA-PJM",  # Virginia
    "eastus2": "US-MIDA-PJM",  # Virginia
    "centralus": "US-MIDW-MISO",  # Iowa
    "northcentralus": "US-MIDA-PJM",  # Illinois
    "southcentralus": "US-TEX-ERCO",  # Texas
    "westcentralus": "US-NW-WACM",  # Cheyenne, Wyoming (WAPA Rocky Mountain)
    "westus": "US-CAL-CISO",  # California
    "westus2": "US-NW-GCPD",  # Washington (Quincy)
    "westus3": "US-SW-SRP",  # Arizona (Phoenix)
    "canadacentral": "CA-ON",  # Toronto
    "canadaeast": "CA-QC",  # Québec City
    "brazilsouth": "BR-CS",  # São Paulo
    "northeurope": "IE",  # Dublin
    "westeurope": "NL",  # Amsterdam
    "uksouth": "GB",  # London
    "ukwest": "GB",  # Cardiff
    "francecentral": "FR",  # Paris
    "francesouth": "FR",  # Marseille
    "germanywestcentral": "DE",  # Frankfurt
    "germanynorth": "DE",  # Berlin
    "switzerlandnorth": "CH",  # Zurich
    "switzerlandwest": "CH",  # Geneva
    "norwayeast": "NO-NO1",  # Oslo
    "norwaywest": "NO-NO2",  # Stavanger
    "swedencentral": "SE-SE3",  # Gävle
    "polandcentral": "PL",  # Warsaw
    "italynorth": "IT-NO",  # Milan
    "spaincentral": "ES",  # Madrid
    "israelcentral": "IL",  # Israel
    "qatarcentral": "QA",  # Doha
    "uaenorth": "AE",  # Dubai
    "southafricanorth": "ZA",  # Johannesburg
    "eastasia": "HK",  # Hong Kong
    "southeastasia": "SG",  # Singapore
    "japaneast": "JP-TK",  # Tokyo
    "japanwest": "JP-KN",  # Osaka
    "koreacentral": "KR",  # Seoul
    "koreasouth": "KR",  # Busan
    "centralindia": "IN-WE",  # Pune
    "westindia": "IN-WE",  # Mumbai
    "southindia": "IN-SO",  # Chennai
    "australiaeast": "AU-NSW",  # New South Wales
    "australiasoutheast": "AU-VIC",  # Victoria
    "australiacentral": "AU-NSW",  # Canberra
}

CLOUDS: Final[Mapping[str, Mapping[str, str]]] = MappingProxyType(
    {
        "aws": MappingProxyType(_AWS),
        "gcp": MappingProxyType(_GCP),
        "azure": MappingProxyType(_AZURE),
    }
)
"""``{cloud: {region: zone}}`` for ``aws``, ``gcp`` and ``azure``."""

_ALIASES: Final = {"amazon": "aws", "google": "gcp", "gce": "gcp", "az": "azure"}


def _normalise(cloud: str, region: str) -> str:
    region = region.strip().lower()
    if cloud == "azure":
        region = region.replace(" ", "").replace("-", "")  # "West Europe" / "west-europe"
    return region


def cloud_regions(cloud: str) -> Mapping[str, str]:
    """The ``{region: zone}`` table of one cloud (``"aws"``, ``"gcp"`` or ``"azure"``)."""
    key = _ALIASES.get(cloud.strip().lower(), cloud.strip().lower())
    try:
        return CLOUDS[key]
    except KeyError:
        raise UnknownRegionError(
            f"unknown cloud {cloud!r}; use one of {', '.join(CLOUDS)} (as in 'aws:eu-west-2')",
            region=cloud,
            suggestions=tuple(CLOUDS),
        ) from None


def zone_for(region: str) -> str:
    """The grid zone of a cloud region written ``"<cloud>:<region>"``.

    Raises:
        UnknownRegionError: the cloud or the region is not in the table; the message lists
            the closest known regions.
    """
    if not isinstance(region, str) or ":" not in region:
        raise UnknownRegionError(
            f"a cloud region is written '<cloud>:<region>', e.g. 'aws:eu-west-2', got {region!r}",
            region=str(region),
            suggestions=(),
        )
    cloud, _, name = region.partition(":")
    table = cloud_regions(cloud)
    key = _normalise(_ALIASES.get(cloud.strip().lower(), cloud.strip().lower()), name)
    zone = table.get(key)
    if zone is not None:
        return zone
    close = tuple(difflib.get_close_matches(key, list(table), n=5, cutoff=0.6))
    prefix = cloud.strip().lower()
    hint = (
        f"; did you mean {', '.join(f'{prefix}:{c}' for c in close)}?"
        if close
        else f"; known {prefix} regions: {', '.join(sorted(table))}"
    )
    raise UnknownRegionError(
        f"unknown {prefix} region {name!r}{hint} Or pass a grid zone such as 'GB' directly.",
        region=region,
        suggestions=tuple(f"{prefix}:{c}" for c in close),
    )


def resolve_zone(zone: str) -> str:
    """A grid zone: a cloud region (``"aws:eu-west-2"``) is mapped, a zone (``"GB"``) kept."""
    if not isinstance(zone, str) or not zone.strip():
        raise ValueError(
            f"zone must be a non-empty string such as 'GB' or 'aws:eu-west-2', got {zone!r}"
        )
    zone = zone.strip()
    if ":" in zone:
        return zone_for(zone)
    return zone
