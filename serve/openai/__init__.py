"""The OpenAI-compatible REST API: public schemas, the service, routes, the app factory."""
