"""The neural meta-model: weights in, ranked program sketches out (in progress)."""
