"""ecoasync: carbon-aware scheduling, budgets and accounting for async LLM applications.

Layer: edges (the public API); imports every layer, to re-export what users need.

::

    policy = ecoasync.Policy(max_delay="4h", budget_g=5)
    async with ecoasync.carbon_session(policy, name="nightly") as session:
        ...  # runs in the greenest slot within 4 h; LLM calls are measured and charged
"""

from . import events as events
from ._bus import EventBus as EventBus
from ._bus import EventStream as EventStream
from ._bus import Subscription as Subscription
from ._choose import choose_route as choose_route
from ._choose import choose_route_sync as choose_route_sync
from ._clock import Clock as Clock
from ._clock import SystemClock as SystemClock
from ._clock import use_clock as use_clock
from ._exceptions import CarbonBudgetExceeded as CarbonBudgetExceeded
from ._exceptions import EcoAsyncError as EcoAsyncError
from ._exceptions import ForecastDataError as ForecastDataError
from ._exceptions import ForecastError as ForecastError
from ._exceptions import ForecastTimeout as ForecastTimeout
from ._exceptions import ForecastUnavailable as ForecastUnavailable
from ._exceptions import PolicyError as PolicyError
from ._forecast import Forecast as Forecast
from ._forecast import Gap as Gap
from ._forecast import Signal as Signal
from ._forecast import Slot as Slot
from ._instrument import ElectricityMix as ElectricityMix
from ._instrument import instrument as instrument
from ._instrument import is_instrumented as is_instrumented
from ._instrument import record_call as record_call
from ._instrument import record_call_sync as record_call_sync
from ._instrument import register_model as register_model
from ._instrument import uninstrument as uninstrument
from ._instrument import unregister_model as unregister_model
from ._job import PlannedJob as PlannedJob
from ._ledger import Choice as Choice
from ._ledger import Claim as Claim
from ._ledger import Ledger as Ledger
from ._ledger import SlotLedger as SlotLedger
from ._ledger import default_ledger as default_ledger
from ._plan import Plan as Plan
from ._planner import Assessment as Assessment
from ._planner import assess as assess
from ._planner import plan as plan
from ._policy import Policy as Policy
from ._records import CallRecord as CallRecord
from ._records import ModelUsage as ModelUsage
from ._records import SessionRecord as SessionRecord
from ._records import TagUsage as TagUsage
from ._route_choice import Candidate as Candidate
from ._route_choice import RouteChoice as RouteChoice
from ._routes import Route as Route
from ._routes import RouteError as RouteError
from ._routes import Routes as Routes
from ._session import Session as Session
from ._session import carbon_session as carbon_session
from ._session import default_bus as default_bus
from ._sync import carbon_aware as carbon_aware
from ._sync import carbon_session_sync as carbon_session_sync
from ._version import __version__ as __version__

__all__ = [
    "Assessment",
    "CallRecord",
    "Candidate",
    "CarbonBudgetExceeded",
    "Choice",
    "Claim",
    "Clock",
    "EcoAsyncError",
    "ElectricityMix",
    "EventBus",
    "EventStream",
    "Forecast",
    "ForecastDataError",
    "ForecastError",
    "ForecastTimeout",
    "ForecastUnavailable",
    "Gap",
    "Ledger",
    "ModelUsage",
    "Plan",
    "PlannedJob",
    "Policy",
    "PolicyError",
    "Route",
    "RouteChoice",
    "RouteError",
    "Routes",
    "Session",
    "SessionRecord",
    "Signal",
    "Slot",
    "SlotLedger",
    "Subscription",
    "SystemClock",
    "TagUsage",
    "__version__",
    "assess",
    "carbon_aware",
    "carbon_session",
    "carbon_session_sync",
    "choose_route",
    "choose_route_sync",
    "default_bus",
    "default_ledger",
    "events",
    "instrument",
    "is_instrumented",
    "plan",
    "record_call",
    "record_call_sync",
    "register_model",
    "uninstrument",
    "unregister_model",
    "use_clock",
]
