"""Agents: registration, reported lifecycle state with its version guard, state history, and the agent record
with the rules derived from it (may it take work, is it quarantined)."""
