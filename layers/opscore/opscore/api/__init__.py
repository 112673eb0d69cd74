"""The HTTP edge: the resolver that maps domain errors to statuses, request bodies (JSON and YAML), path and
query parameters, who may call a route (the access policy the authorizer returns), and idempotent requests."""
