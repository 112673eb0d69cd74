"""`opscore logs`: Ops-Core's JSON log lines, filtered alike from the local runtime's file or a deployed stack."""
