"""Every built-in term and the MMD plugin on one global batch, in one process or as one of several
(tests/test_distributed.py spawns the several). float64, BatchNorm in the encoder, every random draw fixed:
z = mu + sigma * e, y = softmax((log p(y|x) + g) / T), VAT's start directions and the MMD's prior sample
(torch.randn_like) are rows of global tensors, so the only difference between the runs is the process count."""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch

from helpers import tiny_model
from imae_kit import distributed
from imae_kit.registry import get, load_plugin_file
from imae_kit.step import Samples, Step
from imae_kit.terms.aggregate_posterior import MarginalKL, TotalCorrelation
from imae_kit.terms.baselines import AggregateKL, CapacityKL, PosteriorKL
from imae_kit.terms.information import DiscreteMutualInformation, VirtualAdversarialSmoothness
from imae_kit.terms.reconstruction import Reconstruction

PLUGIN = Path(__file__).resolve().parent.parent / "plugins" / "mmd.py"
B, D, K1, K2, N = 8, 16, 3, 4, 40


def capacity_between_the_halves(kl: torch.Tensor) -> float:
    """A capacity C between the two halves' mean KLs and off the global mean, so that |mean KL - C| is
    not the mean of the halves' |mean KL - C|: the term is a statistic of the global batch."""
    low, high = sorted(float(h.mean()) for h in kl.chunk(2))
    return low + 0.75 * (high - low)


def terms(model: torch.nn.Module, x: torch.Tensor) -> list[tuple[str, object]]:
    with torch.no_grad():  # one process's encoder (before any conversion), on the whole batch
        post = model.encode(x)
        kl_z = (0.5 * (post.mu.square() + post.sigma.square() - 1.0) - post.sigma.log()).sum(dim=1)
        kl_y = math.log(K2) + (post.probs * post.logits).sum(dim=1)
    c_z, c_y = capacity_between_the_halves(kl_z), capacity_between_the_halves(kl_y)
    load_plugin_file(PLUGIN)
    mmd = get("term", "mmd")
    return [("reconstruction", Reconstruction()), ("discrete_mi", DiscreteMutualInformation()),
            ("vat", VirtualAdversarialSmoothness()),  # the exact product: forward-mode AD through the global BN
            ("vat/finite_difference", VirtualAdversarialSmoothness(xi=1e-3, hvp="finite_difference")),
            *[(f"marginal_kl/{e}", MarginalKL(estimator=e)) for e in ("batch", "mws", "mss")],
            *[(f"total_correlation/{e}", TotalCorrelation(estimator=e)) for e in ("batch", "mws", "mss")],
            ("posterior_kl", PosteriorKL()), ("aggregate_kl/batch", AggregateKL()),
            ("aggregate_kl/mss", AggregateKL(estimator="mss")),
            ("capacity_kl", CapacityKL(z_capacity_start=c_z, z_capacity_end=c_z, y_capacity_start=c_y,
                                       y_capacity_end=c_y)),
            ("mmd/imq", mmd()), ("mmd/rbf", mmd(kernel="rbf"))]


def compute(process: distributed.ProcessContext) -> dict[str, tuple[float, list[torch.Tensor]]]:
    """Each term's global value and the DDP-averaged gradient of -sign * value for every parameter."""
    g = torch.Generator().manual_seed(7)
    x = torch.rand(B, D, generator=g, dtype=torch.float64)
    e = torch.randn(B, K1, generator=g, dtype=torch.float64)
    gumbel = -torch.log(-torch.log(torch.rand(B, K2, generator=g, dtype=torch.float64)))
    noise = {D: torch.randn(B, D, generator=g, dtype=torch.float64),
             K1: torch.randn(B, K1, generator=g, dtype=torch.float64)}
    model = tiny_model(data_dim=D, k1=K1, k2=K2, hidden=(12,), batch_norm=True, seed=3).double()
    term_list = terms(model, x)
    if process.is_distributed:
        distributed.convert_batch_norm(model, process)
    params = list(model.parameters())
    original = torch.randn_like
    torch.randn_like = lambda t, **kw: process.slice(noise[t.shape[1]]).to(t)  # the global draws, sliced
    results = {}
    try:
        for label, term in term_list:
            xs = process.slice(x)
            post = model.encode(xs)
            z = post.mu + post.sigma * process.slice(e)
            y = torch.softmax((post.logits + process.slice(gumbel)) / model.temperature, dim=-1)
            step = Step(x=xs, posterior=post, samples=Samples(z=z, y=y), likelihood=model.decode(y, z),
                        encode=model.encode, dataset_size=N, step=3, gather=process.gather, rank=process.rank,
                        world_size=process.world_size)
            value = term(step)
            sign = 1.0 if type(term).sense == "maximize" else -1.0
            grads = torch.autograd.grad(-sign * value, params, allow_unused=True)
            grads = [torch.zeros_like(p) if gr is None else gr for p, gr in zip(params, grads)]
            averaged = [process.sum(gr.detach()) / process.world_size for gr in grads]  # DDP's average
            results[label] = (process.mean_of([float(value.detach())])[0], averaged)
    finally:
        torch.randn_like = original
    return results


def worker(rank: int, world: int, port: int, out: str) -> None:
    """One of ``world`` spawned processes: join a gloo group, compute, save the results (rank 0)."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    process = distributed.init_from_environment()
    results = compute(process)
    if process.is_main:
        torch.save(results, out)
