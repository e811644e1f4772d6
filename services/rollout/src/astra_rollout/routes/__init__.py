"""rollout REST routes, one module per topic."""
