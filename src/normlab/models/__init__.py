"""Stacked models: K independent members computed as one batched network, their norms,
initialization, dropout masks and the model families. Pure maths, no I/O."""
