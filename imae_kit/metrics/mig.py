"""The mutual information gap (MIG) of Chen et al. 2018 (beta-TCVAE), and the histogram MIG of
disentanglement_lib / disent, from encodings (mu, sigma, p(y|x)) and ground-truth factor classes.

MIG = (1/F) sum_j [ I(l_(1); v_j) - I(l_(2); v_j) ] / H(v_j), where l_(1), l_(2) are the latents with the
largest and second-largest mutual information with factor v_j. Mutual informations below 0 (sampling noise)
are clamped to 0 before the gap, as Chen et al. do.

Sampled estimator (``sampled_latent_factor_information``), as Chen et al. compute it:
    I(z_k; v_j) = H(z_k) - H(z_k | v_j), with
    H(z_k)       = -E log q(z_k),         q(z_k)       = (1/N) sum_n q(z_k | x_n)       over ALL N points,
    H(z_k | v_j) = -E log q(z_k | v_j),   q(z_k | v=i) = (1/N_i) sum_{n: v_j(n)=i} q(z_k | x_n),
with S samples z_s ~ q(z | x_s), x_s drawn uniformly from the N points, and each log q an exact logsumexp
over its mixture (imae_kit.metrics.mixture). The conditional entropy of factor j uses the same S samples,
each scored against the mixture of the points sharing its value of v_j: this estimates
sum_i p(v_j=i) H(z_k | v_j=i) with p the factor's frequency in the data (uniform on a full factor grid).
Chen et al.'s code draws a fresh 10,000 samples for every factor value instead; the expectation is the same,
while sharing the samples (i) costs (1 + sum_j 1/|v_j|) S N K Gaussian evaluations instead of (1 + F) S N K,
and (ii) makes the errors of H(z_k) and H(z_k|v_j) largely cancel in their difference. H(v_j) is the
empirical factor entropy (log |v_j| on a full grid, which is what Chen et al. hard-code).
A discrete latent y enters exactly: I(y; v_j) = H(q(y)) - sum_i p(v_j=i) H(q(y | v_j=i)) with
q(y | v=i) the mean of p(y|x) over the points with v_j = i. No sampling.

Memory: besides the encodings (N x (2 K + K2) floats), one factor's sorted copy of mu and sigma
(2 N K floats) and the work buffers of ``imae_kit.metrics.mixture`` (workers x 3 x 4 bytes x chunk_elements)
-- independent of S.

Histogram estimator (``histogram_latent_factor_information``), as disentanglement_lib's ``mig`` and disent
compute it: each latent mean mu_k is discretised into ``bins`` equal-width bins over its range
(numpy's histogram edges; np.digitize on all but the last edge), and I(bin(mu_k); v_j) is the discrete mutual
information of the counts (``code_factor_information``, as sklearn's mutual_info_score); H(v_j) likewise from
the counts. It ignores sigma entirely and depends on the bin count, so it is not the same number as the sampled
MIG: a latent whose mean tracks a factor perfectly but whose sigma is wide scores high here and low in the
sampled MIG.
"""

from __future__ import annotations

import math
from typing import Sequence

import attrs
import numpy as np
import torch

from imae_kit.estimators import LOG_2PI, entropy_of_probs
from imae_kit.metrics.information import gaussian_bounds, sample_indices
from imae_kit.metrics.mixture import DEFAULT_CHUNK_ELEMENTS, MixtureKernel, choose_kernel, sample_posterior
from imae_kit.progress import progress_callback


@attrs.frozen(eq=False)
class LatentFactorInformation:
    """I(latent; factor) in nats: ``matrix`` [L, F] over ``latent_names`` x ``factor_names``, with the factor
    entropies H(v_j) [F]. For the sampled estimator also H(z_k) [K], H(z_k|v_j) [K, F], the sample count S,
    the number of points N and the kernel used."""

    latent_names: tuple[str, ...]
    factor_names: tuple[str, ...]
    matrix: torch.Tensor
    factor_entropies: torch.Tensor
    marginal_entropies: torch.Tensor | None = None
    conditional_entropies: torch.Tensor | None = None
    samples: int | None = None
    points: int = 0
    kernel: str | None = None
    bounds: dict[str, float] = attrs.field(factory=dict)

    def bound_error(self) -> float:
        """The most the MIG over these latents and factors can move for the bounded latents (whose I(z_k; v_j),
        in [0, U_k], is taken as 0): a factor's top and second I each move by at most max U_k, so its gap by at
        most max U_k / H(v_j); the MIG, a mean over factors, by the mean of that. 0 when nothing is bounded."""
        bounded = [u for name, u in self.bounds.items() if name in self.latent_names]
        if not bounded or not len(self.factor_entropies):
            return 0.0
        h = self.factor_entropies.to(torch.float64)
        per_factor = torch.where(h > 0, max(bounded) / h.clamp_min(1e-300), torch.zeros_like(h))
        return float(per_factor.mean())

    def select(self, latents: Sequence[str] | None = None, factors: Sequence[str] | None = None
               ) -> "LatentFactorInformation":
        """The sub-matrix over the named latents and factors (all when None)."""
        li = [self.latent_names.index(n) for n in (latents or self.latent_names)]
        fi = [self.factor_names.index(n) for n in (factors or self.factor_names)]
        cond = None if self.conditional_entropies is None else self.conditional_entropies[:, fi]
        return attrs.evolve(self, latent_names=tuple(self.latent_names[i] for i in li),
                            factor_names=tuple(self.factor_names[i] for i in fi),
                            matrix=self.matrix[li][:, fi], factor_entropies=self.factor_entropies[fi],
                            conditional_entropies=cond)


@attrs.frozen(eq=False)
class MigScore:
    """MIG ``score``; per-factor normalised ``gaps`` [F]; ``normalized`` = I / H(v) [L, F]; for each factor the
    ``top`` and ``second`` latent names."""

    score: float
    gaps: torch.Tensor
    normalized: torch.Tensor
    top: tuple[str, ...]
    second: tuple[str, ...]
    latent_names: tuple[str, ...]
    factor_names: tuple[str, ...]

    def to_dict(self) -> dict:
        """JSON-ready form: score, gaps by factor, top and second latent by factor."""
        return {
            "score": self.score,
            "gaps": {f: float(g) for f, g in zip(self.factor_names, self.gaps)},
            "top_latent": dict(zip(self.factor_names, self.top)),
            "second_latent": dict(zip(self.factor_names, self.second)),
            "factors": list(self.factor_names),
            "latents": list(self.latent_names),
        }


def mutual_information_gap(info: LatentFactorInformation, *, clamp: bool = True) -> MigScore:
    """MIG from an information matrix: mean over factors of (top - second) I(l; v_j) / H(v_j)."""
    if len(info.latent_names) < 2:
        raise ValueError("the MIG needs at least two latents")
    mi = info.matrix.to(torch.float64)
    if clamp:
        mi = mi.clamp_min(0.0)
    h = info.factor_entropies.to(torch.float64)
    normalized = torch.where(h > 0, mi / h.clamp_min(1e-300), torch.zeros_like(mi))
    order = torch.argsort(normalized, dim=0, descending=True, stable=True)
    top, second = order[0], order[1]
    cols = torch.arange(normalized.shape[1])
    gaps = normalized[top, cols] - normalized[second, cols]
    return MigScore(score=float(gaps.mean()) if len(gaps) else float("nan"), gaps=gaps, normalized=normalized,
                    top=tuple(info.latent_names[int(i)] for i in top),
                    second=tuple(info.latent_names[int(i)] for i in second),
                    latent_names=info.latent_names, factor_names=info.factor_names)


def _factor_names(factors: torch.Tensor, names: Sequence[str] | None) -> tuple[str, ...]:
    f = int(factors.shape[1])
    out = tuple(names) if names is not None else tuple(f"v{j}" for j in range(f))
    if len(out) != f:
        raise ValueError(f"{len(out)} factor names for {f} factor columns")
    return out


def factor_entropies(factors: torch.Tensor) -> torch.Tensor:
    """Empirical entropy H(v_j) in nats of each factor column of ``factors`` [N, F] (long class indices)."""
    out = []
    for j in range(factors.shape[1]):
        counts = torch.bincount(factors[:, j]).double()
        out.append(entropy_of_probs(counts / counts.sum()))
    return torch.stack(out) if out else torch.zeros(0, dtype=torch.float64)


def discrete_latent_factor_information(probs: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """Exact I(y; v_j) [F] for a categorical latent p(y|x) [N, K2]: H(q(y)) - sum_i p(v_j=i) H(q(y|v_j=i))."""
    p = probs.to(torch.float64)
    h_y = entropy_of_probs(p.mean(0))
    out = []
    for j in range(factors.shape[1]):
        v = factors[:, j]
        size = int(v.max()) + 1
        sums = torch.zeros(size, p.shape[1], dtype=torch.float64).index_add_(0, v, p)
        counts = torch.bincount(v, minlength=size).double()
        keep = counts > 0
        cond = sums[keep] / counts[keep, None]
        out.append(h_y - (counts[keep] / counts.sum() * entropy_of_probs(cond)).sum())
    return torch.stack(out)


def sampled_latent_factor_information(mu: torch.Tensor, sigma: torch.Tensor, factors: torch.Tensor, *,
                                      factor_names: Sequence[str] | None = None, probs: torch.Tensor | None = None,
                                      num_samples: int = 10000, generator: torch.Generator | None = None,
                                      chunk_elements: int = DEFAULT_CHUNK_ELEMENTS, kernel: str = "auto",
                                      progress: bool = False, bound_below: float = 0.0) -> LatentFactorInformation:
    """I(z_k; v_j) for every latent dimension and factor by Chen et al.'s sampled estimator (module docstring),
    over all N rows of mu, sigma [N, K] and factors [N, F]; with ``probs`` [N, K2] a last row I(y; v_j).

    ``bound_below`` > 0: a dimension whose information about x is provably below it (PAPER.md eq. 4's upper bound
    U_k, ``gaussian_bounds``) is bounded, not estimated: its I(z_k; v_j) <= I(z_k; x) <= U_k is entered as 0
    (its entropies as nan) and U_k recorded in ``bounds``; the other dimensions get exactly the numbers they get
    without it (same samples).
    A dimension at the prior costs as much as an informative one, so this is most of the work on a model that
    leaves dimensions unused."""
    n, k_all = mu.shape
    factors = factors.long()
    names = _factor_names(factors, factor_names)
    mu, sigma = mu.to(torch.float32), sigma.to(torch.float32)
    picks = sample_indices(n, num_samples, generator)
    z, own = sample_posterior(mu[picks], sigma[picks], generator)
    upper = gaussian_bounds(mu, sigma).upper  # eq. 4: U_k >= I(x; z_k) >= I(z_k; v_j), v_j a function of x
    keep = [i for i in range(k_all) if not (bound_below > 0 and float(upper[i]) < bound_below)]
    bounds = {f"z{i}": float(upper[i]) for i in range(k_all) if i not in keep}
    mu, sigma, z, own = mu[:, keep], sigma[:, keep], z[:, keep], own[:, keep]
    k = len(keep)
    max_norm = (-torch.log(sigma) - 0.5 * LOG_2PI).max(0).values

    groups = []  # per factor: (values, number of values, points per value, samples per value)
    for j in range(factors.shape[1]):
        v = factors[:, j]
        size = int(v.max()) + 1
        groups.append((v, size, torch.bincount(v, minlength=size), torch.bincount(v[picks], minlength=size)))
    # The marginal mixture over all N points is the sum of the conditional mixtures of any one factor's values:
    # with the factor of fewest values (``first``) the pass over all N gives both, so that factor costs nothing.
    first = min(range(len(groups)), key=lambda j: (groups[j][1], j)) if groups else None
    work = float(num_samples) * n + sum(float((s_counts * counts).sum())
                                        for j, (_, _, counts, s_counts) in enumerate(groups) if j != first)
    used = choose_kernel(kernel, work * k)

    def kernel_over(points: torch.Tensor) -> MixtureKernel:
        return MixtureKernel(mu[points], sigma[points], kernel=used, chunk_elements=chunk_elements,
                             max_normaliser=max_norm)

    with progress_callback(f"MIG entropies ({used})", work, progress) as advance:
        conditional = torch.zeros(k, len(groups), dtype=torch.float64)
        if first is None:
            log_q = MixtureKernel(mu, sigma, kernel=used, chunk_elements=chunk_elements,
                                  max_normaliser=max_norm).log_sum(z, own, advance)
        else:
            v, size, counts, _ = groups[first]
            partial = torch.stack([kernel_over(torch.nonzero(v == i).squeeze(1)).log_sum(z, own, advance)
                                   if int(counts[i]) else torch.full((len(picks), k), -math.inf, dtype=torch.float64)
                                   for i in range(size)])                        # [values, S, K]
            log_q = torch.logsumexp(partial, dim=0)
            own_value = v[picks]
            log_counts = torch.log(counts.double())
            mine = partial[own_value, torch.arange(len(picks))] - log_counts[own_value].unsqueeze(1)
            conditional[:, first] = -mine.sum(0) / len(picks)
        marginal = -(log_q - math.log(n)).mean(0)
        for j, (v, size, counts, s_counts) in enumerate(groups):
            if j == first:
                continue
            order = torch.argsort(v, stable=True)
            s_order = torch.argsort(v[picks], stable=True)
            starts = torch.cumsum(counts, 0) - counts
            s_starts = torch.cumsum(s_counts, 0) - s_counts
            total = torch.zeros(k, dtype=torch.float64)
            for i in range(size):
                if int(s_counts[i]) == 0:
                    continue
                comp = order[int(starts[i]):int(starts[i] + counts[i])]
                rows = s_order[int(s_starts[i]):int(s_starts[i] + s_counts[i])]
                lq = kernel_over(comp).log_sum(z[rows], own[rows], advance) - math.log(int(counts[i]))
                total -= lq.sum(0)
            conditional[:, j] = total / len(picks)
    full_marginal = torch.full((k_all,), math.nan, dtype=torch.float64)
    full_conditional = torch.full((k_all, len(groups)), math.nan, dtype=torch.float64)
    full_marginal[keep], full_conditional[keep] = marginal, conditional
    matrix = torch.zeros(k_all, len(groups), dtype=torch.float64)
    matrix[keep] = marginal[:, None] - conditional
    latents = tuple(f"z{i}" for i in range(k_all))
    if probs is not None:
        matrix = torch.cat([matrix, discrete_latent_factor_information(probs, factors)[None]], 0)
        latents = latents + ("y",)
    return LatentFactorInformation(latent_names=latents, factor_names=names, matrix=matrix,
                                   factor_entropies=factor_entropies(factors), marginal_entropies=full_marginal,
                                   conditional_entropies=full_conditional, samples=len(picks), points=n, kernel=used,
                                   bounds=bounds)


def histogram_discretize(values: torch.Tensor | np.ndarray, bins: int = 20) -> np.ndarray:
    """Bin each column of ``values`` [N, L] into ``bins`` equal-width bins over its range: int array in
    0..bins-1 (numpy's histogram edges; the column maximum falls in the last bin)."""
    x = np.asarray(values, dtype=np.float64)
    out = np.empty(x.shape, dtype=np.int64)
    for col in range(x.shape[1]):
        edges = np.histogram_bin_edges(x[:, col], bins=bins)
        out[:, col] = np.digitize(x[:, col], edges[:-1]) - 1
    return out


def code_factor_information(codes: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """I(c_l; v_j) in nats [L, F] between integer codes [N, L] and integer factors [N, F], from counts."""
    codes = np.asarray(codes, dtype=np.int64)
    factors = np.asarray(factors, dtype=np.int64)
    n, num_codes = codes.shape
    out = np.zeros((num_codes, factors.shape[1]))
    code_sizes = codes.max(0) + 1 if n else np.zeros(num_codes, dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(code_sizes)[:-1]])
    for j in range(factors.shape[1]):
        v = factors[:, j]
        vs = int(v.max()) + 1
        # one bincount for every latent at once: cell (latent l, code c, factor value i)
        flat = ((offsets[None, :] + codes) * vs + v[:, None]).ravel()
        joint_all = np.bincount(flat, minlength=int(code_sizes.sum()) * vs).astype(np.float64)
        pv = np.bincount(v, minlength=vs) / n
        for l in range(num_codes):
            joint = joint_all[offsets[l] * vs:(offsets[l] + code_sizes[l]) * vs].reshape(-1, vs) / n
            pc = joint.sum(1)
            nz = joint > 0
            out[l, j] = (joint[nz] * np.log(joint[nz] / np.outer(pc, pv)[nz])).sum()
    return np.maximum(out, 0.0)


def histogram_latent_factor_information(mu: torch.Tensor, factors: torch.Tensor, *, bins: int = 20,
                                        factor_names: Sequence[str] | None = None,
                                        discrete: torch.Tensor | None = None) -> LatentFactorInformation:
    """I(bin(mu_k); v_j) [K(+1), F] as disentanglement_lib's MIG computes it (module docstring); with
    ``discrete`` [N] (e.g. argmax_y p(y|x)) a last row I(y; v_j) from counts."""
    factors = factors.long()
    names = _factor_names(factors, factor_names)
    codes = histogram_discretize(mu.detach().cpu().numpy(), bins)
    latents = tuple(f"z{i}" for i in range(mu.shape[1]))
    if discrete is not None:
        codes = np.concatenate([codes, discrete.long().cpu().numpy()[:, None]], 1)
        latents = latents + ("y",)
    matrix = torch.from_numpy(code_factor_information(codes, factors.cpu().numpy()))
    return LatentFactorInformation(latent_names=latents, factor_names=names, matrix=matrix,
                                   factor_entropies=factor_entropies(factors), points=int(mu.shape[0]))


def label_factors(factors: torch.Tensor, labels: torch.Tensor | None) -> list[int]:
    """Indices of the factor columns identical to the class labels (e.g. dSprites' shape)."""
    if labels is None:
        return []
    return [j for j in range(factors.shape[1]) if torch.equal(factors[:, j], labels.long())]


def compute_mig(mu: torch.Tensor, sigma: torch.Tensor, factors: torch.Tensor, *, factor_names: Sequence[str],
                probs: torch.Tensor | None = None, z_factors: Sequence[str] | None = None,
                num_samples: int = 10000, bins: int = 20, generator: torch.Generator | None = None,
                chunk_elements: int = DEFAULT_CHUNK_ELEMENTS, kernel: str = "auto",
                progress: bool = False, bound_below: float = 0.0) -> dict:
    """Both MIGs, both ways: (a) "z_only" over ``z_factors`` (default all) with z alone (PAPER.md Figure 5);
    (b) "with_y" over every factor with y as one more latent (Figure 7). JSON-ready dict with the scores,
    per-factor gaps, full I(latent; factor) matrices (nats) and what was used."""
    names = tuple(factor_names)
    z_names = tuple(z_factors) if z_factors is not None else names
    sampled = sampled_latent_factor_information(mu, sigma, factors, factor_names=names, probs=probs,
                                                num_samples=num_samples, generator=generator,
                                                chunk_elements=chunk_elements, kernel=kernel, progress=progress,
                                                bound_below=bound_below)
    z_latents = tuple(n for n in sampled.latent_names if n != "y")
    sampled_z = sampled.select(z_latents, z_names)
    hist = histogram_latent_factor_information(mu, factors, bins=bins, factor_names=names,
                                               discrete=None if probs is None else probs.argmax(-1))

    def matrix(info: LatentFactorInformation) -> dict:
        return {"latents": list(info.latent_names), "factors": list(info.factor_names),
                "nats": info.matrix.tolist(), "factor_entropies": info.factor_entropies.tolist()}

    out = {
        "points": int(mu.shape[0]),
        "samples": sampled.samples,
        "kernel": sampled.kernel,
        "z_only": {**mutual_information_gap(sampled_z).to_dict(), "bound_error": sampled_z.bound_error()},
        "with_y": ({**mutual_information_gap(sampled).to_dict(), "bound_error": sampled.bound_error()}
                   if probs is not None else None),
        "mutual_information": matrix(sampled),
        "marginal_entropies": [None if math.isnan(h) else h for h in sampled.marginal_entropies.tolist()],
        "bounded_latents": sampled.bounds,
        "bound_below": bound_below,
        "histogram": {
            "bins": bins,
            "z_only": mutual_information_gap(hist.select(z_latents, z_names), clamp=False).to_dict(),
            "with_y": mutual_information_gap(hist, clamp=False).to_dict() if probs is not None else None,
            "mutual_information": matrix(hist),
        },
    }
    return out
