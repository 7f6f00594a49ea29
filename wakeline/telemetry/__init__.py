"""OpenTelemetry for wakeline: spans and metrics of runs, off by default.

:mod:`.runtime` owns the SDK objects; :mod:`.genai` maps effects and their results to the
OpenTelemetry GenAI semantic conventions.  Nothing here is imported by ``import wakeline``.
"""
