"""``regress_agents``' app with its prompt edited, as a module of its own (for ``wakeline
run MODULE:AGENT``, which wants exactly one app per module)."""

from regress_agents import changed_prompt

app = changed_prompt()
