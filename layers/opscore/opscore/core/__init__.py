"""Shared plumbing every context uses: domain errors, settings, observability (logger, tracer, metrics), the
clock and timestamp format, and the base API contracts and JSON rules. Depends on no other opscore package."""
