"""envhost REST routes, one module per topic."""
