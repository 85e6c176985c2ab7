"""A plain, hand-written PyTorch IMAE training step: no recipes, no registry, no pyro.

It is the baseline of ``benchmarks/step_speed.py`` and an independent computation of the IMAE loss
(PAPER.md eq. 10) that ``tests/test_reference_loop.py`` checks the composed objective against. It
draws its random numbers in the same order and with the same calls as the composed model, so with
the same seed and weights the two losses agree to rounding.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# --set overrides that turn recipes/imae_mnist.toml into PAPER.md eq. 10 exactly (the recipe weights VAT by
# 2.5 beta and H(y|x) by 1/4, IMSAT's balance, and ramps the z terms in from epoch 10); the loss below is eq. 10's
EQ10_OVERRIDES = ('objective.terms.vat.weight="${beta}"', "objective.terms.discrete_mi.params.conditional_weight=1",
                  'objective.terms.marginal_kl.weight="${beta}"', 'objective.terms.total_correlation.weight="${2 * beta}"')


def mnist_networks(k1: int = 10, k2: int = 10, d: int = 784) -> tuple[nn.Sequential, nn.Sequential]:
    """The MNIST encoder and decoder of PAPER.md Appendix G, as plain nn.Sequential stacks."""
    enc = nn.Sequential(nn.Linear(d, 500), nn.BatchNorm1d(500), nn.ReLU(),
                        nn.Linear(500, 1000), nn.BatchNorm1d(1000), nn.ReLU(),
                        nn.Linear(1000, 2 * k1 + k2))
    dec = nn.Sequential(nn.Linear(k1 + k2, 500), nn.ReLU(), nn.Linear(500, 500), nn.ReLU(), nn.Linear(500, d))
    return enc, dec


def _encode(enc: nn.Module, x: torch.Tensor, k1: int, bf16: bool = False):
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        h = enc(x)
    h = h.float()
    mu, log_sigma, logits = h[:, :k1], h[:, k1:2 * k1], h[:, 2 * k1:]
    return mu, log_sigma.clamp(-9.0, 5.0).exp(), torch.log_softmax(logits, dim=-1)


def _kl_categorical(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    return (log_p.exp() * (log_p - log_q)).sum(-1)


def _log_normal(z, mu, sigma):
    return -0.5 * ((z - mu) / sigma) ** 2 - sigma.log() - 0.5 * math.log(2 * math.pi)


def imae_loss(enc: nn.Module, dec: nn.Module, x: torch.Tensor, *, beta: float, gamma: float, k1: int,
              temperature: float = 0.67, eps: float = 1.0, xi: float = 1e-6, hvp: str = "exact",
              bf16: bool = False) -> tuple[torch.Tensor, dict]:
    """The negated IMAE objective for one batch, and its parts: recon + beta (I - VAT) - beta KL - gamma TC.

    ``hvp``: VAT's Hessian-vector product, ``"exact"`` (H d = J^T (diag p - p p^T) J d, here by double
    backward: an independent route from imae-kit's forward-mode one) or ``"finite_difference"`` (step xi).
    ``bf16``: the networks under CPU autocast (outputs back in fp32); the exact product in bf16, or the
    finite difference's probe in fp32 against an fp32 target; the final VAT pass in bf16, as imae-kit's
    ``train.precision = "bf16"`` does."""
    b = x.shape[0]
    mu, sigma, log_p = _encode(enc, x, k1, bf16)
    z = mu + sigma * torch.empty(mu.shape).normal_()
    u = torch.rand(log_p.shape).clamp(min=torch.finfo(x.dtype).eps, max=1 - torch.finfo(x.dtype).eps)
    scores = (log_p - (-u.log()).log()) / temperature
    y = (scores - scores.logsumexp(-1, keepdim=True)).exp()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        x_logits = dec(torch.cat([y, z], dim=-1))
    x_logits = x_logits.float()
    recon = -F.binary_cross_entropy_with_logits(x_logits, x, reduction="sum") / b

    p = log_p.exp()
    log_mean = torch.logsumexp(log_p, dim=0) - math.log(b)
    mi = -(log_mean.exp() * log_mean).sum() + (p * log_p).sum(-1).mean()

    # VAT: one power iteration, batch-norm running statistics left alone during the extra passes
    bns = [m for m in enc.modules() if isinstance(m, nn.BatchNorm1d) and m.training]
    for m in bns:
        m.track_running_stats = False
    target = log_p.detach()
    d = torch.randn_like(x)
    d = d / d.abs().amax(1, keepdim=True)
    d = d / d.norm(dim=1, keepdim=True)
    with torch.enable_grad():
        if hvp == "exact":
            xg = x.detach().requires_grad_(True)
            log_p_at_x = _encode(enc, xg, k1, bf16)[2]
            v = torch.zeros_like(log_p_at_x, requires_grad=True)
            (jt_v,) = torch.autograd.grad(log_p_at_x, xg, v, create_graph=True, retain_graph=True)  # J^T v
            (jd,) = torch.autograd.grad(jt_v, v, d)  # J d: J^T v is linear in v
            p_at_x = log_p_at_x.detach().exp()
            (grad,) = torch.autograd.grad(log_p_at_x, xg, p_at_x * (jd - (p_at_x * jd).sum(-1, keepdim=True)))
        else:
            probe_target = target
            if bf16:
                with torch.no_grad():
                    probe_target = _encode(enc, x, k1)[2]
            probe = (xi * d).requires_grad_(True)
            kl = _kl_categorical(probe_target, _encode(enc, x + probe, k1)[2]).sum()
            (grad,) = torch.autograd.grad(kl, probe)
    grad = grad / grad.abs().amax(1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)
    r_adv = eps * grad / grad.norm(dim=1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)
    vat = _kl_categorical(target, _encode(enc, x + r_adv, k1, bf16)[2]).mean()
    for m in bns:
        m.track_running_stats = True

    # Appendix B batch estimators: log p(z_ik) and log p(z_i) by logsumexp over the batch
    log_q = _log_normal(z[:, None, :], mu[None, :, :], sigma[None, :, :])        # [B, B, K]
    log_marg = torch.logsumexp(log_q, dim=1) - math.log(b)                       # [B, K]
    log_joint = torch.logsumexp(log_q.sum(-1), dim=1) - math.log(b)              # [B]
    log_prior = -0.5 * z ** 2 - 0.5 * math.log(2 * math.pi)
    marginal_kl = (log_marg - log_prior).sum(-1).mean()
    tc = (log_joint - log_marg.sum(-1)).mean()

    objective = recon + beta * (mi - vat) - beta * marginal_kl - gamma * tc
    parts = {"reconstruction": recon, "discrete_mi": mi, "vat": vat, "marginal_kl": marginal_kl,
             "total_correlation": tc}
    return -objective, parts
