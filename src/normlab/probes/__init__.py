"""Instruments: what a claim needs measured about a network while it trains.

Each instrument is a small class (``schedule.Probe``) registered by name in
``spec.probes``; ``schedule.ProbeSet`` measures a run's instruments when they are
due, between a step's backward pass and its update. An instrument measures every member
of a stack at once and leaves the model as it found it: parameters, optimizer state and
the normalization layers' running statistics (``StackedModel.frozen_statistics``).

- ``layers``: per-layer gradient and weight norms and their ratio.
- ``activations``: per-layer pre-activation statistics (mean, std, percentiles of fixed
  units, saturation, dead units).
- ``ics``: internal covariate shift as Santurkar et al. (2018) define it.
- ``smoothness``: loss variation, gradient predictiveness and effective β-smoothness
  along the gradient (Santurkar et al. 2018).
- ``bn``: batch-statistics vs running-statistics discrepancy, "precise BN", variance shift.
- ``inference``: BN folded away (outputs compared) and inference latency with and
  without it, at a run's end.
"""
