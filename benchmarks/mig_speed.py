"""Time the full-dataset MIG (Chen et al.'s sampled estimator, both variants, plus the histogram MIG) on the
full dSprites grid: 737,280 points x 10 latents, factor classes in the official order.

    .venv/bin/python benchmarks/mig_speed.py                 # eager and compiled kernels, S = 10,000
    .venv/bin/python benchmarks/mig_speed.py --kernel eager --samples 2000
    .venv/bin/python benchmarks/mig_speed.py --points 73728  # a 10% quick look (every 10th grid point)

Encodings: if the dSprites replica is already cached (``imae-kit data fetch dsprites``), its images are encoded
by an untrained encoder of the paper's dSprites architecture (timed separately); otherwise, or with
``--synthetic``, synthetic encodings of the same size are used (four dimensions follow scale, orientation, posX
and posY with noise, the rest is noise). The MIG's cost depends only on N, K, S and the factor grid, not on the
values of the encodings; the output says which were used.
"""

from __future__ import annotations

import argparse
import math
import resource
import time

import torch

from imae_kit.data.dsprites import DSprites
from imae_kit.errors import ImaeKitError
from imae_kit.metrics.mig import (discrete_latent_factor_information, histogram_latent_factor_information,
                                  mutual_information_gap, sampled_latent_factor_information)
from imae_kit.metrics.mixture import DEFAULT_CHUNK_ELEMENTS, choose_kernel
from imae_kit.model import Encoder
from imae_kit.networks import MLP

SIZES = (3, 6, 40, 32, 32)
NAMES = ("shape", "scale", "orientation", "posX", "posY")


def grid_factors(points: int) -> torch.Tensor:
    """Factor classes [points, 5] of grid images 0, step, 2 step, ... (all of them for points = 737,280),
    in the official order ((shape*6 + scale)*40 + orientation)*1024 + posX*32 + posY."""
    total = math.prod(SIZES)
    index = torch.arange(0, total, max(1, total // points))[:points]
    out = torch.empty(len(index), 5, dtype=torch.long)
    rest = index.clone()
    for k in range(4, -1, -1):
        out[:, k] = rest % SIZES[k]
        rest = rest // SIZES[k]
    return out, index


def synthetic_encodings(factors: torch.Tensor, latents: int, seed: int) -> tuple[torch.Tensor, ...]:
    """mu, sigma [N, K], probs [N, 3]: dimensions 0-3 follow scale, orientation, posX, posY (with noise)."""
    g = torch.Generator().manual_seed(seed)
    n = len(factors)
    mu = torch.randn(n, latents, generator=g)
    for d, j in enumerate((1, 2, 3, 4)[:latents]):
        mu[:, d] = factors[:, j].float() / (SIZES[j] - 1) * 2 - 1 + 0.1 * torch.randn(n, generator=g)
    sigma = torch.exp(torch.randn(n, latents, generator=g) * 0.3 - 2.0)
    sigma[:, 4:] = 1.0
    logits = torch.nn.functional.one_hot(factors[:, 0], 3).float() * 3 + torch.randn(n, 3, generator=g)
    return mu, sigma, torch.softmax(logits, -1)


def real_encodings(index: torch.Tensor, latents: int, seed: int, batch: int) -> tuple[torch.Tensor, ...] | None:
    """Encode cached dSprites replica images with an untrained paper-architecture encoder, or None."""
    try:
        splits = DSprites(auto_fetch=False).load()
    except ImaeKitError:
        return None
    torch.manual_seed(seed)
    body, out = MLP(hidden=(1200, 1200, 2400)).build(4096)
    enc = Encoder(body, out, latents, 3).eval()
    n = len(index)
    mu, sigma, probs = torch.empty(n, latents), torch.empty(n, latents), torch.empty(n, 3)
    with torch.no_grad():
        for a in range(0, n, batch):
            post = enc(splits.train.get_batch(index[a:a + batch]).x)
            mu[a:a + batch], sigma[a:a + batch], probs[a:a + batch] = post.mu, post.sigma, post.probs
    return mu, sigma, probs


def exp_throughput(seconds: float = 2.0, elements: int = 1 << 24) -> float:
    """float32 exponentials per second of ``torch.exp`` alone (in place, torch's threads): the bound of a kernel
    whose every Gaussian evaluation costs one exp (the rest, a subtract, two multiplies and an add, is cheaper)."""
    x = torch.rand(elements).mul_(-80.0)
    buf = torch.empty_like(x)
    torch.exp(x, out=buf)  # warm up
    done, t = 0, time.perf_counter()
    while time.perf_counter() - t < seconds:
        torch.exp(x, out=buf)
        done += elements
    return done / (time.perf_counter() - t)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=math.prod(SIZES), help="grid points (default: all 737,280)")
    parser.add_argument("--latents", type=int, default=10)
    parser.add_argument("--samples", type=int, default=10000, help="samples of q(z|x) (Chen et al.: 10,000)")
    parser.add_argument("--kernel", choices=("eager", "compiled", "both"), default="both")
    parser.add_argument("--chunk-elements", type=int, default=DEFAULT_CHUNK_ELEMENTS)
    parser.add_argument("--synthetic", action="store_true", help="synthetic encodings even if dSprites is cached")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    factors, index = grid_factors(args.points)
    n, k = len(factors), args.latents
    print(f"mig_speed: N = {n:,} points x K = {k} latents, factor grid {SIZES} ({', '.join(NAMES)}), "
          f"S = {args.samples:,} samples, torch {torch.__version__}, {torch.get_num_threads()} threads")
    encodings = None
    if not args.synthetic:
        t = time.perf_counter()
        encodings = real_encodings(index, k, args.seed, 1000)
        if encodings is not None:
            print(f"encodings: the cached dSprites replica encoded by an untrained paper-architecture encoder "
                  f"(4096-1200-1200-2400) in {time.perf_counter() - t:.1f} s (not part of the MIG time)")
    if encodings is None:
        encodings = synthetic_encodings(factors, k, args.seed)
        print(f"encodings: SYNTHETIC, {n:,} x {k} with the real dSprites factor grid (the dSprites replica is not "
              "cached, or --synthetic); the MIG's cost depends on N, K, S and the grid, not on these values")
    mu, sigma, probs = encodings

    work = float(args.samples) * n * (1 + sum(1 / s for s in SIZES)) * k
    chen = float(args.samples) * n * (1 + len(NAMES)) * k
    print(f"work: {work:.3g} Gaussian log-density evaluations = (1 + sum_j 1/|v_j|) S N K; Chen et al.'s code "
          f"(fresh samples per factor value) would need (1 + F) S N K = {chen:.3g}, {chen / work:.1f}x more")
    workers = torch.get_num_threads()
    print(f"memory bound of the kernels: {workers} workers x 3 x 4 bytes x {args.chunk_elements:,} = "
          f"{workers * 12 * args.chunk_elements / 2 ** 20:.0f} MiB of work buffers, plus one factor's sorted copy "
          f"of mu and sigma, {2 * 4 * n * k / 2 ** 20:.0f} MiB (encodings: {4 * n * (2 * k + 3) / 2 ** 20:.0f} MiB)")

    t = time.perf_counter()
    y_info = discrete_latent_factor_information(probs, factors)
    t_y = time.perf_counter() - t
    t = time.perf_counter()
    hist = histogram_latent_factor_information(mu, factors, bins=20, factor_names=NAMES,
                                               discrete=probs.argmax(-1))
    hist_z = mutual_information_gap(hist.select([f"z{i}" for i in range(k)], NAMES[1:]), clamp=False)
    t_hist = time.perf_counter() - t
    print(f"I(y; v_j) exact: {t_y:.2f} s;  histogram MIG (20 bins, z and y): {t_hist:.2f} s, "
          f"score z only {hist_z.score:.3f}")

    kernels = ("eager", "compiled") if args.kernel == "both" else (args.kernel,)
    times = {}
    for kern in kernels:
        warm = 0.0
        if kern == "compiled":
            t = time.perf_counter()
            used = choose_kernel("compiled", work)
            warm = time.perf_counter() - t
            if used != "compiled":
                print("compiled kernel unavailable here (torch.compile failed): skipped")
                continue
        t = time.perf_counter()
        info = sampled_latent_factor_information(mu, sigma, factors, factor_names=NAMES, probs=probs,
                                                 num_samples=args.samples, generator=torch.Generator().manual_seed(1),
                                                 chunk_elements=args.chunk_elements, kernel=kern, progress=True)
        seconds = time.perf_counter() - t
        times[kern] = seconds
        z_only = mutual_information_gap(info.select([f"z{i}" for i in range(k)], NAMES[1:]))
        with_y = mutual_information_gap(info)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"{kern:>8}: sampled MIG (H(z_k), H(z_k|v_j) for all 5 factors, I(y;v_j)) {seconds:7.1f} s "
              f"= {seconds / 60:.2f} min, {work / seconds / 1e9:.2f} G evaluations/s"
              + (f", compile warm-up {warm:.1f} s (once per process; cached on disk)" if kern == "compiled" else "")
              + f"; MIG z only {z_only.score:.3f}, with y {with_y.score:.3f}; peak RSS {peak:.0f} MiB")
    if len(times) == 2:
        print(f"ratio eager / compiled: {times['eager'] / times['compiled']:.2f}x")
    if times:
        rate = exp_throughput()
        best = min(times.values())
        print(f"bound: torch.exp alone, {rate / 1e9:.2f} G exponentials/s on {torch.get_num_threads()} threads "
              f"(CPU capability {torch.backends.cpu.get_cpu_capability()}); the fastest kernel reaches "
              f"{work / best / rate:.0%} of it, and at that bound this MIG would take {work / rate:.1f} s")
    del y_info


if __name__ == "__main__":
    main()
