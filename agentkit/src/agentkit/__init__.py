"""agentkit: a small, typed agent library."""
