"""`make bench`: what Ops-Core costs to run, measured on this machine (see docs/performance.md)."""
