"""API keys: how they are made, stored (hash only), revoked and resolved to a principal."""
