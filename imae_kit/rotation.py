"""Rotate two continuous latent dimensions of a trained model, and see what each objective makes of it.

A probe of *why* a model's MIG is what it is: if an objective does not change when a pair of latent
dimensions is rotated, nothing in it prefers the axis-aligned code the MIG rewards. ``rotated(model,
dims, theta)`` is the same autoencoder seen in a rotated basis of ``z``:

- encoder: mu' = R mu and a diagonal posterior again, sigma'^2 = diag(R diag(sigma^2) R^T) (the
  moment-matched diagonal Gaussian: the factorial encoder cannot represent the rotated, correlated one);
- decoder: q(x | y, z') = q(x | y, R^T z'), so the decoder undoes the rotation of its input.

At theta = 0 the model is unchanged; at theta = 90 degrees the pair is swapped (one sign flipped), which
the factorial encoder represents exactly, so every term's value is that of the unrotated model up to the
Monte-Carlo draw. In between, the terms that read the aggregate posterior (marginal KL, TC) change only
where the aggregate is not rotation invariant (Gaussian marginals are), and the posterior KL and the
reconstruction change through the diagonal approximation, which costs more the larger sigma is.
``benchmarks/rotation.py`` prints the profile of a run's objective over theta beside its MIG.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from imae_kit.model import HybridAutoencoder
from imae_kit.step import Posterior


def rotation_matrix(size: int, dims: tuple[int, int], theta: float) -> torch.Tensor:
    """The K1 x K1 rotation by ``theta`` radians in the plane of ``dims`` (identity elsewhere)."""
    i, j = dims
    if i == j or not (0 <= i < size and 0 <= j < size):
        raise ValueError(f"dims must be two different dimensions in [0, {size}), not {dims}")
    r = torch.eye(size, dtype=torch.float64)
    c, s = math.cos(theta), math.sin(theta)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


POSTERIORS = ("moments", "entropy")


def _fp32(t: torch.Tensor):
    """A region where autocast (the step's bf16) is off, so the rotation's products stay fp32."""
    return torch.autocast(t.device.type, enabled=False)


class RotatedEncoder(nn.Module):
    """An encoder whose p(z|x) is seen in the basis z' = R z, as a diagonal Gaussian again.

    ``posterior = "moments"``: sigma'^2 = diag(R diag(sigma^2) R^T), the moment-matched diagonal Gaussian.
    Its entropy is at least the original's (Hadamard's inequality: a covariance's determinant is at most the
    product of its diagonal), so a term that reads the posterior's own density sees a wider posterior too.
    ``"entropy"``: the same sigma' scaled by one factor per example so that prod_k sigma'_k = prod_k sigma_k
    (the original's entropy), to tell an effect of the rotated aggregate from one of a wider posterior."""

    def __init__(self, inner: nn.Module, rotation: torch.Tensor, posterior: str = "moments"):
        super().__init__()
        if posterior not in POSTERIORS:
            raise ValueError(f"posterior must be one of {POSTERIORS}, not {posterior!r}")
        self.inner = inner
        self.posterior = posterior
        self.register_buffer("rotation", rotation.float(), persistent=False)

    latent_continuous = property(lambda self: self.inner.latent_continuous)
    latent_discrete = property(lambda self: self.inner.latent_discrete)

    @property
    def compute_dtype(self) -> torch.dtype | None:
        """The wrapped encoder's network arithmetic."""
        return self.inner.compute_dtype

    def forward(self, x: torch.Tensor) -> Posterior:
        """p(y, z' | x): mu' = R mu, sigma' as ``posterior`` says, y unchanged."""
        post = self.inner(x)
        r = self.rotation
        with _fp32(x):  # the terms read mu and sigma in fp32: the rotation must not round them to bf16
            sigma = (post.sigma.square() @ r.square().T).sqrt()
            if self.posterior == "entropy":
                sigma = sigma * torch.exp((post.sigma.log() - sigma.log()).mean(-1, keepdim=True))
            mu = post.mu @ r.T
        return Posterior(mu=mu, sigma=sigma, logits=post.logits)


class RotatedDecoder(nn.Module):
    """A decoder that maps z' back to z = R^T z' before decoding."""

    def __init__(self, inner: nn.Module, rotation: torch.Tensor):
        super().__init__()
        self.inner = inner
        self.register_buffer("rotation", rotation.float(), persistent=False)

    @property
    def compute_dtype(self) -> torch.dtype | None:
        """The wrapped decoder's network arithmetic."""
        return self.inner.compute_dtype

    def forward(self, y: torch.Tensor, z: torch.Tensor):
        """q(x | y, R^T z'), with z' given as rows (so z = z' R)."""
        with _fp32(z):
            z = z.float() @ self.rotation
        return self.inner(y, z)


def rotated(model: HybridAutoencoder, dims: tuple[int, int], theta: float,
            posterior: str = "moments") -> HybridAutoencoder:
    """``model`` seen with latent dimensions ``dims`` rotated by ``theta`` radians (shares its parameters);
    ``posterior``: how the rotated posterior is made diagonal again (``RotatedEncoder``)."""
    r = rotation_matrix(model.latent_continuous, dims, theta).to(next(model.parameters()).device)
    out = HybridAutoencoder(RotatedEncoder(model.encoder, r, posterior), RotatedDecoder(model.decoder, r),
                            model.image_shape, model.temperature)
    out.train(model.training)
    return out


def informative_pair(mu: torch.Tensor, sigma: torch.Tensor) -> tuple[int, int]:
    """The two dimensions with the largest eq. 5 lower bound on I(x; z_k), 1/2 log(1 + Var[mu_k] / E[sigma_k^2])."""
    bound = 0.5 * torch.log1p(mu.double().var(0) / sigma.double().square().mean(0))
    first, second = torch.topk(bound, 2).indices.tolist()
    return int(first), int(second)


def objective_profile(trainer, model: HybridAutoencoder, step: int, batches: list[torch.Tensor]) -> dict[str, float]:
    """Mean over ``batches`` (rows of the training set) of each weighted term's loss contribution and the loss,
    for ``model`` in place of the trainer's; the draws are seeded per batch, the same for every model."""
    original = trainer.model
    trainer.model = model
    sums: dict[str, float] = {}
    try:
        for b, index in enumerate(batches):
            x = trainer.train_set.get_batch(index).x
            torch.manual_seed(10_007 + b)
            out = trainer.forward(x, step, index=index, log=True)
            for label, record in out.records.items():
                if record.weight != 0.0:
                    sums[label] = sums.get(label, 0.0) + record.contribution
            sums["loss"] = sums.get("loss", 0.0) + float(out.loss.detach())
    finally:
        trainer.model = original
    return {k: v / len(batches) for k, v in sums.items()}
