"""descentkit.callbacks."""
