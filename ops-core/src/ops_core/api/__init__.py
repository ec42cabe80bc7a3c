"""The REST API (FastAPI) and the Python client the CLI uses to talk to it."""
