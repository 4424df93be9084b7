"""Reading telemetry back: the loader, the summaries, the ESG export and the rendering behind
``ecoasync report`` and ``ecoasync plot``. Private: the CLI is the interface."""
