"""Watching a running bot: its metrics, and the HTTP server of /healthz and /metrics."""
