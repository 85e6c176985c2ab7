"""Network bodies that know shapes: ``build(in_shape, target_shape=None) -> (module, out_shape)``.

The protocol (what ``imae_kit.model.build_model`` asks of a registered network body):

- ``input`` (class attribute): ``"flat"`` (the default) or ``"image"``. As an encoder, a flat body is built
  for ``in_shape = (D,)`` and receives x as [B, D]; an image body is built for ``in_shape = (C, H, W)`` and
  receives [B, C, H, W] (the model reshapes the flattened batch before the body and flattens its output).
- ``build(in_shape, target_shape=None)`` returns the module and the shape of one output (without the batch
  dimension). A decoder body is built for ``in_shape = (K1 + K2,)`` and is given ``target_shape = (C, H, W)``,
  the images it reconstructs: a body that produces them itself (a transposed convolution ending in C
  channels) returns ``out_shape == target_shape``, and its output, flattened, is the Bernoulli's logits;
  any other ``out_shape`` gets the model's final Linear to D = C H W. A body may leave ``target_shape`` out
  of its signature (then it is never given).

Built in: ``mlp`` (PAPER.md Appendix G) and ``conv`` (the 64x64 encoder/decoder of the disentanglement
literature, Burgess et al. 2018 / disentanglement_lib, with a 28x28 variant).
"""

from __future__ import annotations

import math
from typing import ClassVar

import attrs
import torch
from torch import nn
from torch.autograd import forward_ad

from imae_kit.params import bool_field, choice_field, float_field, int_field, int_list_field
from imae_kit.registry import register_network

_ACTIVATIONS = {"relu": nn.ReLU, "elu": nn.ELU, "tanh": nn.Tanh, "leaky_relu": nn.LeakyReLU}
INPUTS = ("flat", "image")


class Linear(nn.Linear):
    """``nn.Linear`` whose forward-mode pass costs two matrix products, not three.

    PyTorch's tangent of ``addmm`` is ``x_t W^T + x W_t^T`` and it materialises the weight's zero tangent, so
    each layer of VAT's exact Hessian-vector product (imae_kit.terms.information) paid a third product of the
    layer's full size against zeros. Given a dual input, this layer computes the value and the tangent
    ``x_t W^T`` itself (the weights carry no tangent). Otherwise, and in its parameters and state dict, it is
    ``nn.Linear``.
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002 - torch's name
        primal, tangent = forward_ad.unpack_dual(input)
        if tangent is None:
            return super().forward(input)
        value = super().forward(primal)
        with torch.no_grad():  # the tangent needs no graph (and under autocast reuses the cached bf16 weight)
            tangent_out = nn.functional.linear(tangent, self.weight)
        return forward_ad.make_dual(value, tangent_out)


class BatchNorm1d(nn.BatchNorm1d):
    """``nn.BatchNorm1d`` that normalises a bf16 (or fp16) input in fp32 and hands the result back in the
    input's dtype, as PyTorch's mixed-dtype kernel does (it accumulates in fp32 too). The difference is
    forward-mode AD, which VAT's exact Hessian-vector product uses: PyTorch's tangent of a bf16 input with
    fp32 parameters comes out in fp32 beside a bf16 value, and the next Linear refuses the pair."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002 - torch's name
        if input.dtype in (torch.bfloat16, torch.float16):
            return super().forward(input.float()).to(input.dtype)
        return super().forward(input)


@register_network("mlp")
@attrs.frozen
class MLP:
    """Fully connected body: for each width, Linear -> [BatchNorm1d] -> activation.

    PAPER.md Appendix G: MNIST encoder 500-1000 with batch norm, decoder 500-500; dSprites encoder
    1200-1200-2400 and decoder 1200-1200-1200 without batch norm. It works on flat vectors (``input =
    "flat"``): an image batch reaches it flattened to [B, D].
    """

    input: ClassVar[str] = "flat"

    hidden: tuple[int, ...] = int_list_field((500, 1000), doc="widths of the hidden layers")
    batch_norm: bool = bool_field(False, doc="BatchNorm1d after each hidden Linear")
    activation: str = choice_field("relu", tuple(_ACTIVATIONS), doc="nonlinearity")
    weight_scale: float = float_field(0.0, min=0.0, doc="0: PyTorch's initialisation of the hidden Linears; "
                                                         "s > 0: weights N(0, s^2 / fan_in), biases 0 (IMSAT: 0.1)")

    def build(self, in_shape: int | tuple[int, ...], target_shape: tuple[int, ...] | None = None
              ) -> tuple[nn.Module, int | tuple[int, ...]]:
        """Return (module, out_shape) for flat inputs of ``in_shape`` = (D,) (a shape of more dimensions is
        taken as its product); an int ``in_shape`` gives an int out (the features)."""
        width = in_shape if isinstance(in_shape, int) else math.prod(in_shape)
        layers: list[nn.Module] = []
        for h in self.hidden:
            linear = Linear(width, h)
            if self.weight_scale > 0.0:
                # Chainer's Linear(wscale=s), which IMSAT uses: with batch norm after it the forward pass does
                # not see the scale, but the optimiser does (a smaller weight moves further per step)
                with torch.no_grad():
                    linear.weight.normal_(0.0, self.weight_scale / math.sqrt(width))
                    linear.bias.zero_()
            layers.append(linear)
            if self.batch_norm:
                layers.append(BatchNorm1d(h))
            layers.append(_ACTIVATIONS[self.activation]())
            width = h
        return nn.Sequential(*layers), (width if isinstance(in_shape, int) else (width,))


KERNEL = 4
STRIDE = 2


def outer_padding(size: int, layers: int) -> int:
    """The padding of the outermost convolution (the encoder's first, the decoder's last) for square images
    of side ``size``: the smallest p in 1..3 for which the first convolution's output, size/2 + p - 1, halves
    exactly through the other ``layers - 1`` (64 -> p = 1: 64, 32, 16, 8, 4; 28 -> p = 3: 28, 16, 8, 4, 2).
    The decoder's transposed convolutions undo these sizes exactly. ValueError if no such p exists."""
    step = 2 ** (layers - 1)
    if size % 2 == 0:
        for p in (1, 2, 3):
            if (size // 2 + p - 1) % step == 0:
                return p
    raise ValueError(f"takes square images whose side halves evenly through its {layers} stride-2 "
                     f"convolutions (e.g. 64x64 or 28x28), got side {size}")


@register_network("conv")
@attrs.frozen
class Conv:
    """The convolutional encoder/decoder of the disentanglement literature (Burgess et al. 2018,
    disentanglement_lib): as an encoder, four 4x4 stride-2 convolutions with ``channels`` 32-32-64-64 and
    ReLU, then a ``hidden`` (256) unit Linear and ReLU; as a decoder, the mirror: Linear 256, Linear to
    64 x g x g, four 4x4 stride-2 transposed convolutions 64-32-32-C whose output, [B, C, H, W], is the
    Bernoulli's logits (no final Linear).

    Image size: 64x64 (padding 1: 64 -> 32 -> 16 -> 8 -> 4, so g = 4) and 28x28 (the outermost convolution,
    the encoder's first and the decoder's last, pads by 3: 28 -> 16 -> 8 -> 4 -> 2, g = 2; the decoder's
    last transposed convolution gives back 28); in general the smallest outer padding in 1..3 that makes
    the size halve evenly (``outer_padding``). ``image_size`` (optional) states the side the recipe is for,
    and images of another size are refused.
    """

    input: ClassVar[str] = "image"

    channels: tuple[int, ...] = int_list_field((32, 32, 64, 64), doc="output channels of the encoder's "
                                               "convolutions (the decoder mirrors them)")
    hidden: int = int_field(256, min=1, doc="units of the Linear layer between the convolutions and the latents")
    image_size: int | None = int_field(optional=True, min=1, doc="side of the square images the body is for "
                                       "(64 or 28 ...); absent: the data's")
    activation: str = choice_field("relu", tuple(_ACTIVATIONS), doc="nonlinearity")

    def _geometry(self, shape: tuple[int, ...]) -> tuple[int, int, int]:
        """(channels C, side, outer padding) of images ``shape`` = (C, H, W); ValueError if not served."""
        if len(shape) != 3:
            raise ValueError(f"takes images (C, H, W), got shape {tuple(shape)}")
        c, h, w = (int(s) for s in shape)
        if h != w:
            raise ValueError(f"takes square images, got {h}x{w}")
        if self.image_size is not None and h != self.image_size:
            raise ValueError(f"is set for {self.image_size}x{self.image_size} images (image_size), the data's are "
                             f"{h}x{w}; change image_size or remove it")
        if not self.channels:
            raise ValueError("needs at least one convolution (channels = [32, 32, 64, 64])")
        return c, h, outer_padding(h, len(self.channels))

    def build(self, in_shape: tuple[int, ...], target_shape: tuple[int, ...] | None = None
              ) -> tuple[nn.Module, tuple[int, ...]]:
        """Encoder for ``in_shape`` = (C, H, W) images; decoder from ``in_shape`` = (K,) latents to
        ``target_shape`` = (C, H, W) logits."""
        act = _ACTIVATIONS[self.activation]
        if len(in_shape) == 3:
            return self._encoder(tuple(in_shape), act)
        if target_shape is None or len(target_shape) != 3:
            raise ValueError(f"as a decoder needs the image shape (C, H, W) to produce; got inputs {tuple(in_shape)} "
                             f"and target {target_shape}")
        return self._decoder(math.prod(in_shape), tuple(target_shape), act)

    def _encoder(self, shape: tuple[int, ...], act: type[nn.Module]) -> tuple[nn.Module, tuple[int, ...]]:
        c, side, pad = self._geometry(shape)
        layers: list[nn.Module] = []
        width = c
        for i, ch in enumerate(self.channels):
            layers += [nn.Conv2d(width, ch, KERNEL, STRIDE, padding=pad if i == 0 else 1), act()]
            width = ch
        grid = (side // 2 + pad - 1) // 2 ** (len(self.channels) - 1)
        layers += [nn.Flatten(1), Linear(width * grid * grid, self.hidden), act()]
        return nn.Sequential(*layers), (self.hidden,)

    def _decoder(self, features: int, target: tuple[int, ...], act: type[nn.Module]
                 ) -> tuple[nn.Module, tuple[int, ...]]:
        c, side, pad = self._geometry(target)
        grid = (side // 2 + pad - 1) // 2 ** (len(self.channels) - 1)
        mirrored = tuple(reversed(self.channels))
        layers: list[nn.Module] = [Linear(features, self.hidden), act(),
                                   Linear(self.hidden, mirrored[0] * grid * grid), act(),
                                   nn.Unflatten(1, (mirrored[0], grid, grid))]
        outs = mirrored[1:] + (c,)
        width = mirrored[0]
        for i, ch in enumerate(outs):
            last = i == len(outs) - 1
            layers.append(nn.ConvTranspose2d(width, ch, KERNEL, STRIDE, padding=pad if last else 1))
            if not last:
                layers.append(act())
            width = ch
        return nn.Sequential(*layers), (c, side, side)
