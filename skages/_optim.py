"""Keras' Adam in PyTorch.

Keras (2.11 and later, the optimiser astroNN trains with) adds its epsilon to
``sqrt(v_t)`` before the bias correction of ``v_t``::

    var -= lr * sqrt(1 - beta2**t) / (1 - beta1**t) * m_t / (sqrt(v_t) + epsilon)

PyTorch adds it after (``m_hat / (sqrt(v_hat) + eps)``). The two are the same update
when PyTorch's ``eps`` is ``epsilon / sqrt(1 - beta2**t)`` at step ``t``, which is what
:class:`KerasAdam` sets before each step: about 3e-6 at the first step for Keras'
default 1e-7, falling to 1e-7, against PyTorch's constant 1e-8. Measured in
``benchmarks/bench_vs_astronn.py --mode steps``: from identical weights this makes
skages' steps those of astroNN to float32 rounding.
"""

from __future__ import annotations

import torch

__all__ = ["KerasAdam", "optimizer_class"]


class KerasAdam(torch.optim.Adam):
    """:class:`torch.optim.Adam` with Keras' placement of epsilon.

    Parameters
    ----------
    params : iterable
        Parameters or parameter groups.
    lr : float, default=1e-3
    betas : tuple of float, default=(0.9, 0.999)
    epsilon : float, default=1e-7
        Keras' ``epsilon`` (its default).
    **kwargs
        Other :class:`torch.optim.Adam` arguments (``weight_decay``, ``foreach``, ...).
    """

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), epsilon: float = 1e-7,
                 **kwargs):  # fmt: skip
        super().__init__(params, lr=lr, betas=betas, eps=epsilon, **kwargs)
        self.keras_epsilon = float(epsilon)

    @torch.no_grad()
    def step(self, closure=None):
        """One Adam step, Keras' way (see the module docstring)."""
        for group in self.param_groups:
            done = [int(self.state[p]["step"]) for p in group["params"] if "step" in self.state[p]]
            t = 1 + max(done, default=0)
            epsilon = group.setdefault("keras_epsilon", self.keras_epsilon)
            group["eps"] = epsilon / (1.0 - group["betas"][1] ** t) ** 0.5
        return super().step(closure)


def optimizer_class(adam: str) -> type[torch.optim.Adam]:
    """The optimiser of ``SpectrumToPSDEncoder(adam=...)``: ``"keras"`` or ``"torch"``."""
    return KerasAdam if adam == "keras" else torch.optim.Adam
