"""Torch-style callable loss objects holding their options."""
from ._binary import binary_cross_entropy, binary_cross_entropy_with_logits


class _Loss:
    _fn = None
    _options = ()

    def __init__(self, **options):
        self.options = options

    def __call__(self, input, target, **kwargs):
        return type(self)._fn(input, target, **{**self.options, **kwargs})

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"{type(self).__name__}({args})"


class BCELoss(_Loss):
    """``BCELoss(weight=None, reduction='mean')``: callable
    :func:`bce_fast.binary_cross_entropy` with fixed options, as
    ``torch.nn.BCELoss``."""

    _fn = staticmethod(binary_cross_entropy)

    def __init__(self, weight=None, reduction="mean"):
        super().__init__(weight=weight, reduction=reduction)


class BCEWithLogitsLoss(_Loss):
    """``BCEWithLogitsLoss(weight=None, reduction='mean', pos_weight=None)``:
    callable :func:`bce_fast.binary_cross_entropy_with_logits`, as
    ``torch.nn.BCEWithLogitsLoss``."""

    _fn = staticmethod(binary_cross_entropy_with_logits)

    def __init__(self, weight=None, reduction="mean", pos_weight=None):
        super().__init__(weight=weight, reduction=reduction, pos_weight=pos_weight)
