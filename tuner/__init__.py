"""descentkit.tuner."""
