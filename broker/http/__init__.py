"""The HTTP edge of the broker: endpoint declarations, authentication, problem+json, OpenAPI."""
