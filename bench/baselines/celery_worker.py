"""The module ``celery --app`` loads in the worker: the baseline's app, configured from the environment."""

from bench.baselines.celery_pg import make_app
from bench.baselines.env import WorkerConfig

app = make_app(WorkerConfig.from_env())
