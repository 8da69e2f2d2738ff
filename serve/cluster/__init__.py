"""Controller, workers and the client that talks to them: registration, heartbeats, dispatch."""
