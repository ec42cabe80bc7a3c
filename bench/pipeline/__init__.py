"""ops-core's own pipeline, driven as real ``opscore api`` / ``opscore worker`` processes, and its bare twin."""
