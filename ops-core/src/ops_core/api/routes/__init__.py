"""The v1 REST API: one router per resource, plus health and metrics."""
