"""Staging stand-ins: a throwaway PostgreSQL and local, protocol-faithful servers for the app and its providers."""
