"""The one HTTP client every eval and the pool talk to a server through, and the one SSE stream reader."""
