"""Data access: the DynamoDB item shapes and every request Ops-Core makes to its table."""
