"""synth REST routes, one module per topic."""
