"""Encode a data set in batches into the tensors every metric works from (no model needed afterwards)."""

from __future__ import annotations

import math

import attrs
import torch

from imae_kit.data.base import ArrayDataset
from imae_kit.metrics.mixture import progress_bar


@attrs.frozen(eq=False)
class Encodings:
    """Encoder outputs over a set of points, on the CPU, in float32.

    ``mu``, ``sigma`` [N, K1]: p(z|x); ``probs`` [N, K2]: p(y|x); ``labels`` [N] or None; ``factors`` [N, F]
    or None (class indices); ``index`` [N]: the data set indices encoded. With ``reconstruction=True``,
    ``nll_sampled`` [N] is -log q(x|y,z) in nats for one draw of (y, z) as in training (z reparameterised, y a
    Gumbel-softmax relaxed one-hot at the model's temperature) and ``nll_mean_code`` [N] is -log q(x|y*, mu)
    for the most probable category y* as a one-hot and the posterior mean of z.
    """

    mu: torch.Tensor
    sigma: torch.Tensor
    probs: torch.Tensor
    labels: torch.Tensor | None
    factors: torch.Tensor | None
    index: torch.Tensor
    nll_sampled: torch.Tensor | None = None
    nll_mean_code: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.mu.shape[0])

    @property
    def predicted(self) -> torch.Tensor:
        """The most probable category argmax_y p(y|x) [N]."""
        return self.probs.argmax(-1)

    def subset(self, rows: torch.Tensor) -> "Encodings":
        """The encodings of the given rows (positions in this object, not data set indices)."""
        pick = (lambda t: None if t is None else t[rows])
        return Encodings(mu=self.mu[rows], sigma=self.sigma[rows], probs=self.probs[rows],
                         labels=pick(self.labels), factors=pick(self.factors), index=self.index[rows],
                         nll_sampled=pick(self.nll_sampled), nll_mean_code=pick(self.nll_mean_code))


def _relaxed_one_hot(logits: torch.Tensor, temperature: float, generator: torch.Generator | None) -> torch.Tensor:
    """A Gumbel-softmax sample softmax((logits + g) / T), g ~ Gumbel(0, 1), drawn with ``generator``."""
    u = torch.rand(logits.shape, generator=generator).clamp_(1e-10, 1.0 - 1e-7).to(logits.device)
    g = -torch.log(-torch.log(u))
    return torch.softmax((logits + g) / temperature, dim=-1)


@torch.no_grad()
def encode_dataset(model, dataset: ArrayDataset, *, batch_size: int = 500, indices: torch.Tensor | None = None,
                   reconstruction: bool = False, generator: torch.Generator | None = None,
                   progress: bool = False, description: str = "encoding") -> Encodings:
    """Run ``model.encode`` over ``dataset`` (or its ``indices``) in batches; the model is put in eval mode
    for the call and restored after."""
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        n = len(dataset)
        index = torch.arange(n) if indices is None else indices.long().reshape(-1)
        mus, sigmas, probs, labels, factors, nll_s, nll_m = [], [], [], [], [], [], []
        with progress_bar(description, len(index), progress) as advance:
            for a in range(0, len(index), batch_size):
                idx = index[a:a + batch_size]
                batch = dataset.get_batch(idx)
                x = batch.x.to(device)
                post = model.encode(x)
                mus.append(post.mu.float().cpu())
                sigmas.append(post.sigma.float().cpu())
                probs.append(post.probs.float().cpu())
                if batch.labels is not None:
                    labels.append(batch.labels.long().cpu())
                if batch.factors is not None:
                    factors.append(batch.factors.long().cpu())
                if reconstruction:
                    eps = torch.randn(post.mu.shape, generator=generator).to(device)
                    z = post.mu + post.sigma * eps
                    y = _relaxed_one_hot(post.logits, model.temperature, generator)
                    nll_s.append(-model.decode(y, z).log_prob(x).float().cpu())
                    y_star = torch.nn.functional.one_hot(post.logits.argmax(-1), post.logits.shape[-1]).to(x.dtype)
                    nll_m.append(-model.decode(y_star, post.mu).log_prob(x).float().cpu())
                advance(len(idx))
    finally:
        model.train(was_training)
    cat = (lambda xs: torch.cat(xs) if xs else None)
    return Encodings(mu=torch.cat(mus), sigma=torch.cat(sigmas), probs=torch.cat(probs), labels=cat(labels),
                     factors=cat(factors), index=index, nll_sampled=cat(nll_s), nll_mean_code=cat(nll_m))


def posterior_kls(mu: torch.Tensor, sigma: torch.Tensor, probs: torch.Tensor,
                  prior_scale: float = 1.0) -> tuple[float, float]:
    """Mean posterior KLs per image in nats: KL(p(z|x) || N(0, s^2 I)) and KL(p(y|x) || Uniform(K2))."""
    mu64, s64, p64 = mu.double(), sigma.double(), probs.double()
    var_ratio = (s64 / prior_scale) ** 2
    kl_z = 0.5 * (var_ratio + (mu64 / prior_scale) ** 2 - 1.0 - torch.log(var_ratio)).sum(-1).mean()
    h = -(p64 * torch.log(p64.clamp_min(1e-300))).sum(-1)
    kl_y = (math.log(p64.shape[-1]) - h).mean()
    return float(kl_z), float(kl_y)
