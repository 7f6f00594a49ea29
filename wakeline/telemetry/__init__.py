"""OpenTelemetry for wakeline: spans and metrics of runs, off by default.

:mod:`.runtime` owns the SDK objects (:class:`~.runtime.Telemetry`); :mod:`.tracing` derives
a run's trace from its id and carries trace context in record headers; :mod:`.config` reads
the ``OTEL_*`` variables; :mod:`.genai` maps effects and their results to the OpenTelemetry
GenAI semantic conventions.  Nothing here is imported by ``import wakeline``.
"""
