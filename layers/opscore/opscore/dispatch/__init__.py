"""Agent-aware dispatch: per-agent priority queues and leases, the results agents report, heartbeats, waking
an agent's queue, delivery channels (poll, webhook), and agent health (expired leases, offline agents,
quarantine)."""
