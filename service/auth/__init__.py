"""Who is calling: API keys as principals (an id, scopes, limits), what each scope allows, who
owns what, per-key quotas and the WebSocket tickets. ``service/http/security.py`` is the layer
that applies them to HTTP and WebSockets; the gRPC service applies them to its calls."""
