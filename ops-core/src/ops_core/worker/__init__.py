"""The worker side: the supervised process pool, the runner that holds agent runs, and its periodic duties."""
