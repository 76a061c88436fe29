"""A run's stacked optimizer, built from its configuration."""

from __future__ import annotations

from normlab.models.semantics import get_semantics
from normlab.spec.config import RunConfig
from normlab.train.optim import SGD, Adam, Optimizer


def make_optimizer(config: RunConfig) -> Optimizer:
    """A fresh stacked optimizer of ``config``'s kind and semantics."""
    if config.optimizer == "sgd":
        return SGD(momentum=config.momentum, nesterov=config.nesterov)
    sem = get_semantics(config.semantics)
    return Adam(
        beta1=config.beta1,
        eps=sem.adam_eps,
        eps_before_bias_correction=sem.adam_eps_before_bias_correction,
    )
