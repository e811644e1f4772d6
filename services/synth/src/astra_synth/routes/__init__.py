"""synth REST routes, one module per topic (registry and datasets keep theirs by their code)."""
