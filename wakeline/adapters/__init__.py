"""Framework adapters: an existing framework's agent, run unchanged on wakeline.

Each adapter lives in its own subpackage and imports its framework only there (an optional
extra, e.g. ``pip install 'wakeline[pydantic-ai]'``).  Durability is added by wrapping the
framework's ports -- its model and its tools -- never by editing the framework: every model
request becomes a ``ctx.llm`` call sent through the framework's own model
(``ctx.llm(..., via=provider)``), so budgets, policies, prices, the journal and replay treat
it as any model call; every tool call becomes a ``ctx.tool`` call.  See ``docs/adapters.md``.
"""
