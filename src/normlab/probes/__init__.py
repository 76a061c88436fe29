"""Instruments: what a claim needs measured about a network while it trains.

Each module measures one thing of a stack (every member at once) from its parameters,
one batch and, where it needs them, the optimizer; results are tensors with one value
per member. The measurements leave the model as they found it: parameters, gradients'
owners and the normalization layers' running statistics
(``StackedMLP.frozen_statistics``).

- ``layers``: per-layer gradient and weight norms and their ratio; per-layer
  pre-activation statistics (mean, std, percentiles of fixed units, saturation, dead
  units).
- ``ics``: internal covariate shift as Santurkar et al. (2018) define it.
- ``smoothness``: loss variation, gradient predictiveness and effective β-smoothness
  along the gradient (Santurkar et al. 2018).
- ``bn``: batch-statistics vs running-statistics discrepancy, and "precise BN".
- ``target``: steps, epochs and seconds to a target validation accuracy.
"""
