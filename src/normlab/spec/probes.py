"""The instruments by name (torch-free: the run configuration lists them from here).

Each entry is the ``"module:Class"`` of a ``probes.schedule.Probe``; adding an
instrument is one module plus one line here.
"""

from __future__ import annotations

from normlab.registry import Registry

PROBES: Registry[str] = Registry("probe")
for _name, _target in (
    ("layers", "normlab.probes.layers:LayersProbe"),
    ("activations", "normlab.probes.layers:ActivationsProbe"),
    ("ics", "normlab.probes.ics:CovariateShiftProbe"),
    ("smoothness", "normlab.probes.smoothness:SmoothnessProbe"),
    ("bn", "normlab.probes.bn:BatchNormProbe"),
    ("inference", "normlab.probes.inference:InferenceProbe"),
    ("noise", "normlab.probes.noise:NoiseProbe"),
):
    PROBES.register(_name, _target)
