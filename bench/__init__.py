"""The benchmark suite (GitHub issue "Performance"): ``uv run python -m bench [--quick]``.

Kept out of the test suite on purpose: CI must never time anything. Every
ops-core figure is reported as a ratio against a baseline measured in the same
run, because absolute numbers on a shared machine are noise.
"""
