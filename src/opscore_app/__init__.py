"""The composition root: the only place that builds process-wide objects from the environment."""
