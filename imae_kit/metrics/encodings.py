"""Encode a data set in batches into the tensors every metric works from (no model needed afterwards)."""

from __future__ import annotations

import math

import attrs
import torch

from imae_kit.data.base import ArrayDataset
from imae_kit.distributions import gumbel_softmax
from imae_kit.estimators import entropy_of_probs
from imae_kit.precision import step_autocast
from imae_kit.progress import progress_callback


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
    return gumbel_softmax(logits, temperature, u)


@torch.no_grad()
def encode_dataset(model, dataset: ArrayDataset, *, batch_size: int = 500, indices: torch.Tensor | None = None,
                   reconstruction: bool = False, generator: torch.Generator | None = None,
                   progress: bool = False, description: str = "encoding") -> Encodings:
    """Run ``model.encode`` over ``dataset`` (or its ``indices``) in batches; the model is put in eval mode
    for the call and restored after."""
    was_training = model.training
    model.eval()
    n = len(dataset)
    index = torch.arange(n) if indices is None else indices.long().reshape(-1)
    total = len(index)
    # outputs are allocated once and filled in place: keeping many small per-batch tensors alive between the
    # large per-batch activations fragments the heap
    out: dict[str, torch.Tensor | None] = {}

    def put(name: str, a: int, value: torch.Tensor, dtype: torch.dtype) -> None:
        if name not in out:
            out[name] = torch.empty((total, *value.shape[1:]), dtype=dtype)
        out[name][a:a + len(value)] = value.to(dtype).cpu()

    try:
        device = next(model.parameters()).device
        # under bf16 one autocast region over the loop casts each weight once (imae_kit.precision)
        with progress_callback(description, total, progress) as advance, \
                step_autocast(device.type, getattr(model.encoder, "compute_dtype", None)):
            for a in range(0, total, batch_size):
                idx = index[a:a + batch_size]
                batch = dataset.get_batch(idx)
                x = batch.x.to(device)
                post = model.encode(x)
                put("mu", a, post.mu, torch.float32)
                put("sigma", a, post.sigma, torch.float32)
                put("probs", a, post.probs, torch.float32)
                if batch.labels is not None:
                    put("labels", a, batch.labels, torch.long)
                if batch.factors is not None:
                    put("factors", a, batch.factors, torch.long)
                if reconstruction:
                    eps = torch.randn(post.mu.shape, generator=generator).to(device)
                    z = post.mu + post.sigma * eps
                    y = _relaxed_one_hot(post.logits, model.temperature, generator)
                    put("nll_sampled", a, -model.decode(y, z).log_prob(x), torch.float32)
                    y_star = torch.nn.functional.one_hot(post.logits.argmax(-1), post.logits.shape[-1]).to(x.dtype)
                    put("nll_mean_code", a, -model.decode(y_star, post.mu).log_prob(x), torch.float32)
                advance(len(idx))
    finally:
        model.train(was_training)
    return Encodings(mu=out["mu"], sigma=out["sigma"], probs=out["probs"], labels=out.get("labels"),
                     factors=out.get("factors"), index=index, nll_sampled=out.get("nll_sampled"),
                     nll_mean_code=out.get("nll_mean_code"))


def posterior_kls(mu: torch.Tensor, sigma: torch.Tensor, probs: torch.Tensor,
                  prior_scale: float = 1.0) -> tuple[float, float]:
    """Mean posterior KLs per image in nats: KL(p(z|x) || N(0, s^2 I)) and KL(p(y|x) || Uniform(K2))."""
    mu64, s64, p64 = mu.double(), sigma.double(), probs.double()
    var_ratio = (s64 / prior_scale) ** 2
    kl_z = 0.5 * (var_ratio + (mu64 / prior_scale) ** 2 - 1.0 - torch.log(var_ratio)).sum(-1).mean()
    kl_y = (math.log(p64.shape[-1]) - entropy_of_probs(p64)).mean()
    return float(kl_z), float(kl_y)
