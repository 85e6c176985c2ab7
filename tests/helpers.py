"""Shared test helpers: a small HybridAutoencoder and Steps built from it or from given posteriors."""

from __future__ import annotations

import pyro.distributions as dist
import torch

from imae_kit.model import Decoder, Encoder, HybridAutoencoder
from imae_kit.networks import MLP
from imae_kit.step import Posterior, Samples, Step


def tiny_model(data_dim: int = 16, k1: int = 3, k2: int = 4, hidden: tuple[int, ...] = (32,),
               batch_norm: bool = False, temperature: float = 0.5, seed: int = 0) -> HybridAutoencoder:
    """A small MLP autoencoder on flat inputs of ``data_dim`` pixels (image shape (1, 1, data_dim))."""
    torch.manual_seed(seed)
    enc_body, enc_out = MLP(hidden=hidden, batch_norm=batch_norm).build(data_dim)
    dec_body, dec_out = MLP(hidden=hidden).build(k1 + k2)
    return HybridAutoencoder(
        Encoder(enc_body, enc_out, k1, k2), Decoder(dec_body, dec_out, data_dim), (1, 1, data_dim), temperature
    )


def make_step(model: HybridAutoencoder, x: torch.Tensor, *, dataset_size: int = 1000, step: int = 0) -> Step:
    """One forward pass of ``model`` on ``x`` [B, D] packed as a Step (encode = the bound model.encode)."""
    post = model.encode(x)
    samples = model.sample_latents(post)
    return Step(x=x, posterior=post, samples=samples, likelihood=model.decode(samples.y, samples.z),
                encode=model.encode, dataset_size=dataset_size, step=step)


def posterior_step(mu: torch.Tensor, sigma: torch.Tensor, logits: torch.Tensor | None = None,
                   z: torch.Tensor | None = None, *, dataset_size: int = 1000, step: int = 0) -> Step:
    """A Step with given posteriors and no network: p(z|x) = N(mu, sigma^2), p(y|x) = Cat(logits).

    ``z`` defaults to a reparameterised draw; x is a dummy [B, 1] tensor and the likelihood a
    Bernoulli(0.5) over it; ``encode`` returns the same posterior whatever it is given.
    """
    b = mu.shape[0]
    if logits is None:
        logits = torch.zeros(b, 2, dtype=mu.dtype)
    post = Posterior.from_distributions(dist.Normal(mu, sigma).to_event(1), dist.Categorical(logits=logits))
    if z is None:
        z = post.z.rsample()
    x = torch.zeros(b, 1, dtype=mu.dtype)
    likelihood = dist.Bernoulli(logits=torch.zeros_like(x)).to_event(1)
    samples = Samples(z=z, y=torch.softmax(logits, dim=-1))
    return Step(x=x, posterior=post, samples=samples, likelihood=likelihood, encode=lambda _x: post,
                dataset_size=dataset_size, step=step)
