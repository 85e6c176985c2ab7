"""The hybrid autoencoder: encoder -> pyro posterior over (y, z); decoder -> pyro Bernoulli over pixels."""

from __future__ import annotations

import math

import pyro.distributions as dist
import torch
from torch import nn

from imae_kit.distributions import RelaxedOneHot
from imae_kit.precision import compute_dtype, networks_autocast
from imae_kit.recipe.spec import ModelSpec
from imae_kit.step import Posterior, Samples

LOG_SIGMA_MIN = -9.0  # keep sigma >= 1.2e-4 so log-densities stay finite
LOG_SIGMA_MAX = 5.0


class Encoder(nn.Module):
    """x [B, D] -> Posterior: Normal(mu, sigma).to_event(1) for z [B, K1], Categorical(logits) for y [B, K2].

    The last layer is one linear head split into mu, log sigma (clamped to [-9, 5]) and the logits of y,
    normalised by log-softmax."""

    def __init__(self, body: nn.Module, body_out: int, latent_continuous: int, latent_discrete: int):
        super().__init__()
        self.compute_dtype: torch.dtype | None = None  # bf16: the network under autocast (see imae_kit.precision)
        self.body = body
        self.latent_continuous = latent_continuous
        self.latent_discrete = latent_discrete
        self.head = nn.Linear(body_out, 2 * latent_continuous + latent_discrete)

    def forward(self, x: torch.Tensor) -> Posterior:
        """Encode a flattened batch into p(y|x) and p(z|x) (PAPER.md, Model); the outputs are fp32."""
        with networks_autocast(x.device.type, self.compute_dtype):
            h = self.head(self.body(x))
        if h.dtype in (torch.bfloat16, torch.float16):
            h = h.float()
        k1 = self.latent_continuous
        mu, log_sigma, logits = h[:, :k1], h[:, k1:2 * k1], h[:, 2 * k1:]
        sigma = log_sigma.clamp(LOG_SIGMA_MIN, LOG_SIGMA_MAX).exp()
        return Posterior(mu=mu, sigma=sigma, logits=torch.log_softmax(logits, dim=-1))


class Decoder(nn.Module):
    """(y [B, K2], z [B, K1]) -> q(x|y,z) = Bernoulli(logits).to_event(1) over D pixels."""

    def __init__(self, body: nn.Module, body_out: int, data_dim: int):
        super().__init__()
        self.compute_dtype: torch.dtype | None = None
        self.body = body
        self.head = nn.Linear(body_out, data_dim)

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


def build_model(spec: ModelSpec, image_shape: tuple[int, int, int]) -> HybridAutoencoder:
    """The autoencoder of a validated recipe's [model] for images of ``image_shape``, from its network bodies."""
    data_dim = math.prod(image_shape)
    enc_body, enc_out = spec.encoder.network.build(data_dim)
    dec_body, dec_out = spec.decoder.network.build(spec.latent_continuous + spec.latent_discrete)
    encoder = Encoder(enc_body, enc_out, spec.latent_continuous, spec.latent_discrete)
    decoder = Decoder(dec_body, dec_out, data_dim)
    return HybridAutoencoder(encoder, decoder, image_shape, spec.temperature)
