"""The hybrid autoencoder: encoder -> pyro posterior over (y, z); decoder -> pyro Bernoulli over pixels."""

from __future__ import annotations

import inspect
import math

import pyro.distributions as dist
import torch
from torch import nn

from imae_kit.distributions import RelaxedOneHot
from imae_kit.errors import RecipeError
from imae_kit.networks import INPUTS as NETWORK_INPUTS
from imae_kit.networks import Linear
from imae_kit.precision import compute_dtype, networks_autocast
from imae_kit.recipe.spec import ModelSpec
from imae_kit.step import Posterior, Samples

LOG_SIGMA_MIN = -9.0  # keep sigma >= 1.2e-4 so log-densities stay finite
LOG_SIGMA_MAX = 5.0


class Encoder(nn.Module):
    """x [B, D] -> Posterior: Normal(mu, sigma).to_event(1) for z [B, K1], Categorical(logits) for y [B, K2].

    The last layer is one linear head split into mu, log sigma (clamped to [-9, 5]) and the logits of y,
    normalised by log-softmax. ``logits_init_scale`` multiplies the initial weights and biases of the logits'
    rows of that head: IMSAT (Hu et al. 2017) starts them at 1e-4 of the usual scale, so that p(y|x) starts
    uniform for every x and no cluster is favoured by the initialisation.

    Under bf16 the body runs in bf16 and the head in fp32 (on the body's output cast up): mu, log sigma and
    the logits are the posterior's parameters, which every term reads at full precision, and a bf16 head
    rounds them to 8 bits (log sigma = -4 to steps of 0.03). The head is under 1% of the encoder's
    arithmetic; with it in bf16, beta-TCVAE at beta 8 on dSprites diverged (its KLs grew from 6 to 800 nats
    between steps 200 and 300) where fp32, and bf16 with an fp32 head, stayed bounded
    (docs/results/claims_s14.md, "dSprites")."""

    def __init__(self, body: nn.Module, body_out: int, latent_continuous: int, latent_discrete: int,
                 logits_init_scale: float = 1.0):
        super().__init__()
        self.compute_dtype: torch.dtype | None = None  # bf16: the network under autocast (see imae_kit.precision)
        self.body = body
        self.latent_continuous = latent_continuous
        self.latent_discrete = latent_discrete
        self.head = Linear(body_out, 2 * latent_continuous + latent_discrete)
        if logits_init_scale != 1.0:
            with torch.no_grad():
                self.head.weight[2 * latent_continuous:].mul_(logits_init_scale)
                self.head.bias[2 * latent_continuous:].mul_(logits_init_scale)

    def forward(self, x: torch.Tensor) -> Posterior:
        """Encode a flattened batch into p(y|x) and p(z|x) (PAPER.md, Model); the outputs are fp32."""
        with networks_autocast(x.device.type, self.compute_dtype):
            h = self.body(x)
        if h.dtype in (torch.bfloat16, torch.float16):
            h = h.float()
        with torch.autocast(device_type=x.device.type, enabled=False):  # the head in fp32 (class docstring)
            h = self.head(h)
        k1 = self.latent_continuous
        mu, log_sigma, logits = h[:, :k1], h[:, k1:2 * k1], h[:, 2 * k1:]
        sigma = log_sigma.clamp(LOG_SIGMA_MIN, LOG_SIGMA_MAX).exp()
        return Posterior(mu=mu, sigma=sigma, logits=torch.log_softmax(logits, dim=-1))


class Decoder(nn.Module):
    """(y [B, K2], z [B, K1]) -> q(x|y,z) = Bernoulli(logits).to_event(1) over D pixels.

    ``head``: a final Linear from the body's ``body_out`` features to D (an MLP body); False for a body that
    produces the D logits itself (a conv body's transposed convolutions, flattened), then the head is the
    identity."""

    def __init__(self, body: nn.Module, body_out: int, data_dim: int, head: bool = True):
        super().__init__()
        self.compute_dtype: torch.dtype | None = None
        self.body = body
        if not head and body_out != data_dim:
            raise ValueError(f"a decoder body without a final Linear must produce {data_dim} logits, not {body_out}")
        self.head = Linear(body_out, data_dim) if head else nn.Identity()

    def forward(self, y: torch.Tensor, z: torch.Tensor) -> dist.Independent:
        """Decode a (relaxed) one-hot y and a continuous z into a Bernoulli over pixels (fp32 logits)."""
        with networks_autocast(z.device.type, self.compute_dtype):
            logits = self.head(self.body(torch.cat([y, z], dim=-1)))
        if logits.dtype in (torch.bfloat16, torch.float16):
            logits = logits.float()
        return dist.Bernoulli(logits=logits, validate_args=False).to_event(1)


class HybridAutoencoder(nn.Module):
    """The IMAE model (PAPER.md, Model): a factorial stochastic encoder and a Bernoulli decoder.

    ``temperature`` is the Gumbel-softmax temperature of the relaxed one-hot y fed to the decoder.
    """

    def __init__(self, encoder: Encoder, decoder: Decoder, image_shape: tuple[int, int, int], temperature: float):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.image_shape = tuple(image_shape)
        self.temperature = float(temperature)

    @property
    def precision(self) -> str:
        """'fp32' or 'bf16': the arithmetic of the networks' matrix multiplies."""
        return "bf16" if self.encoder.compute_dtype == torch.bfloat16 else "fp32"

    def set_precision(self, precision: str) -> "HybridAutoencoder":
        """Run the networks in ``precision`` ('fp32' or 'bf16', resolved by ``imae_kit.precision.resolve_precision``)."""
        self.encoder.compute_dtype = self.decoder.compute_dtype = compute_dtype(precision)
        return self

    @property
    def latent_continuous(self) -> int:
        """K1, the number of continuous dimensions."""
        return self.encoder.latent_continuous

    @property
    def latent_discrete(self) -> int:
        """K2, the number of categories of y."""
        return self.encoder.latent_discrete

    @property
    def data_dim(self) -> int:
        """D, the number of pixels."""
        return math.prod(self.image_shape)

    def encode(self, x: torch.Tensor) -> Posterior:
        """p(y, z | x) for a flattened batch x [B, D]."""
        return self.encoder(x)

    def decode(self, y: torch.Tensor, z: torch.Tensor) -> dist.Independent:
        """q(x | y, z) for y [B, K2] (one-hot or relaxed) and z [B, K1]."""
        return self.decoder(y, z)

    def sample_latents(self, posterior: Posterior) -> Samples:
        """Reparameterised samples: z by the location-scale trick, y as a relaxed one-hot (Gumbel-softmax)."""
        z = posterior.z.rsample()
        y = RelaxedOneHot(self.temperature, posterior.logits, validate_args=False).rsample()
        return Samples(z=z, y=y)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Deterministic reconstruction: decode (one-hot argmax y, mean z); returns pixel means [B, D]."""
        post = self.encode(x)
        y = torch.nn.functional.one_hot(post.logits.argmax(-1), self.latent_discrete).to(x.dtype)
        return self.decode(y, post.mu).base_dist.probs


def network_input(network: object) -> str:
    """What a network body takes as an encoder: "flat" ([B, D], the default) or "image" ([B, C, H, W])."""
    kind = getattr(type(network), "input", "flat")
    if kind not in NETWORK_INPUTS:
        raise RecipeError(f"network {getattr(type(network), 'registered_name', type(network).__name__)!r} declares "
                          f"input = {kind!r}; it must be one of {list(NETWORK_INPUTS)}")
    return kind


def _build_body(network: object, where: str, in_shape: tuple[int, ...],
                target_shape: tuple[int, ...] | None = None) -> tuple[nn.Module, tuple[int, ...]]:
    """``network.build(in_shape[, target_shape])`` with its out shape as a tuple; a body that cannot serve the
    shapes (ValueError) is a RecipeError naming the section."""
    accepts_target = "target_shape" in inspect.signature(network.build).parameters
    name = getattr(type(network), "registered_name", type(network).__name__)
    try:
        if target_shape is not None and accepts_target:
            module, out = network.build(in_shape, target_shape=target_shape)
        else:
            module, out = network.build(in_shape)
    except ValueError as exc:
        raise RecipeError(f"{where} body {name!r} {exc}") from None
    return module, ((int(out),) if isinstance(out, int) else tuple(int(s) for s in out))


def build_model(spec: ModelSpec, image_shape: tuple[int, int, int]) -> HybridAutoencoder:
    """The autoencoder of a validated recipe's [model] for images of ``image_shape``, from its network bodies.

    The Step's x stays flat [B, D]: an encoder body with ``input = "image"`` is wrapped as
    Unflatten(C, H, W) -> body -> Flatten, so ``encoder.body`` maps [B, D] to features whatever it is; a
    decoder body whose out shape is the image shape is followed by Flatten and no final Linear."""
    image_shape = tuple(int(s) for s in image_shape)
    data_dim = math.prod(image_shape)
    where_enc, where_dec = "[model.encoder]", "[model.decoder]"
    if network_input(spec.encoder.network) == "image":
        module, enc_out = _build_body(spec.encoder.network, where_enc, image_shape)
        enc_body: nn.Module = nn.Sequential(nn.Unflatten(1, image_shape), module, nn.Flatten(1))
    else:
        enc_body, enc_out = _build_body(spec.encoder.network, where_enc, (data_dim,))
        if len(enc_out) > 1:
            enc_body = nn.Sequential(enc_body, nn.Flatten(1))
    latent = (spec.latent_continuous + spec.latent_discrete,)
    dec_body, dec_out = _build_body(spec.decoder.network, where_dec, latent, target_shape=image_shape)
    produces_images = dec_out == image_shape
    if produces_images or len(dec_out) > 1:
        dec_body = nn.Sequential(dec_body, nn.Flatten(1))
    encoder = Encoder(enc_body, math.prod(enc_out), spec.latent_continuous, spec.latent_discrete,
                      logits_init_scale=spec.logits_init_scale)
    decoder = Decoder(dec_body, math.prod(dec_out), data_dim, head=not produces_images)
    return HybridAutoencoder(encoder, decoder, image_shape, spec.temperature)
