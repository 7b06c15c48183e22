"""Torch-style callable loss objects holding their options."""
from ._binary import binary_cross_entropy, binary_cross_entropy_with_logits
from ._softmax import cross_entropy, nll_loss


class _Loss:
    """Options are attributes, as on torch.nn's loss modules (``reduction``,
    ``weight``, ...); changing one changes later calls.  ``options`` is
    them as a dict; ``forward`` is the call."""

    _fn = None

    def __init__(self, **options):
        self._names = tuple(options)
        for name, value in options.items():
            setattr(self, name, value)

    @property
    def options(self):
        return {name: getattr(self, name) for name in self._names}

    def __call__(self, input, target, **kwargs):
        return type(self)._fn(input, target, **{**self.options, **kwargs})

    def forward(self, input, target):
        return self(input, target)

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


class CrossEntropyLoss(_Loss):
    """``CrossEntropyLoss(weight=None, ignore_index=-100, reduction='mean',
    label_smoothing=0.0, axis=None)``: callable :func:`bce_fast.cross_entropy`
    with fixed options, as ``torch.nn.CrossEntropyLoss``."""

    _fn = staticmethod(cross_entropy)

    def __init__(self, weight=None, ignore_index=-100, reduction="mean",
                 label_smoothing=0.0, axis=None):
        super().__init__(weight=weight, ignore_index=ignore_index, reduction=reduction,
                         label_smoothing=label_smoothing, axis=axis)


class NLLLoss(_Loss):
    """``NLLLoss(weight=None, ignore_index=-100, reduction='mean')``: callable
    :func:`bce_fast.nll_loss`, as ``torch.nn.NLLLoss``."""

    _fn = staticmethod(nll_loss)

    def __init__(self, weight=None, ignore_index=-100, reduction="mean"):
        super().__init__(weight=weight, ignore_index=ignore_index, reduction=reduction)
