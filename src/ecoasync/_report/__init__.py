"""Reading telemetry back: the loader, the summaries, the ESG export and the rendering behind
``ecoasync report`` and ``ecoasync plot``. Private: the CLI is the interface.

Layer: edges (reports over recorded telemetry); imports values only (checks, exceptions,
durations) and the report's own modules: a report reads files, never a live session.
"""
