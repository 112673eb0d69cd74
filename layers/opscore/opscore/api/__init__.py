"""The HTTP edge: routes that declare who may call them (routes), the resolver that maps domain errors to statuses
(resolver), request bodies (bodies, yaml_bodies), path and query parameters (params), callers and the authorizer's
policy (access), and idempotent requests (idempotency)."""
