"""Workflow templates: their contract and checks, versioned immutable storage, the catalogue."""
