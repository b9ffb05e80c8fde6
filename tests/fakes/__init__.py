"""Local fake servers that speak the documented wire formats of the services sdbot talks to.

Every fake listens on 127.0.0.1 on a free port, is started and stopped by the test (or benchmark)
that uses it, and records what it received so tests can assert on the real bytes on the wire.
"""
