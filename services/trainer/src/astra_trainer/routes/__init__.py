"""trainer REST routes, one module per topic."""
