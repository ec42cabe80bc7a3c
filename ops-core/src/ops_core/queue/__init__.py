"""Dramatiq wiring: the broker factory, the one actor, and the publisher the API uses."""
