"""What ops-core is measured against: raw Dramatiq, Dramatiq + two UPDATEs, Celery, a bare FastAPI submit.

Each baseline runs as real worker processes started by its own CLI, on the
same RabbitMQ and PostgreSQL as ops-core, so the ratios compare frameworks and
not machines.
"""
