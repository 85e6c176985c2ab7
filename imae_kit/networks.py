"""Network bodies: the MLPs of PAPER.md's Appendix G tables, registered like any plugin."""

from __future__ import annotations

import attrs
from torch import nn

from imae_kit.params import bool_field, choice_field, int_list_field
from imae_kit.registry import register_network

_ACTIVATIONS = {"relu": nn.ReLU, "elu": nn.ELU, "tanh": nn.Tanh, "leaky_relu": nn.LeakyReLU}


@register_network("mlp")
@attrs.frozen
class MLP:
    """Fully connected body: for each width, Linear -> [BatchNorm1d] -> activation.

    PAPER.md Appendix G: MNIST encoder 500-1000 with batch norm, decoder 500-500; dSprites encoder
    1200-1200-2400 and decoder 1200-1200-1200 without batch norm.
    """

    hidden: tuple[int, ...] = int_list_field((500, 1000), doc="widths of the hidden layers")
    batch_norm: bool = bool_field(False, doc="BatchNorm1d after each hidden Linear")
    activation: str = choice_field("relu", tuple(_ACTIVATIONS), doc="nonlinearity")

    def build(self, in_features: int) -> tuple[nn.Module, int]:
        """Return (module, out_features) for inputs of ``in_features``."""
        layers: list[nn.Module] = []
        width = in_features
        for h in self.hidden:
            layers.append(nn.Linear(width, h))
            if self.batch_norm:
                layers.append(nn.BatchNorm1d(h))
            layers.append(_ACTIVATIONS[self.activation]())
            width = h
        return nn.Sequential(*layers), width
