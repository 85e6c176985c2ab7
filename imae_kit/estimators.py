"""Batch estimators of the aggregate posterior p(z) = mean_n p(z|x_n), and the one home of the Gaussian
log-density and the categorical entropy (the evaluation metrics use them too).

Everything is in log space and vectorised. Shapes: ``z``, ``mu`` and ``sigma`` are [B, K] (batch first,
K = K1 continuous dimensions); the pairwise matrix is [B, B, K] with entry [i, j, k] = log p(z_ik | x_j);
categorical inputs are normalised log-probabilities [B, K2]. All results are in nats.

Aggregate densities (PAPER.md, Appendix B) are importance-weighted mixtures over the batch,

    log p(z_i)  ~= logsumexp_j [ log w_ij + sum_k log p(z_ik | x_j) ]
    log p(z_ik) ~= logsumexp_j [ log w_ij +       log p(z_ik | x_j) ]

with one of three weight matrices w (``estimator``):

- ``"batch"``: w_ij = 1/B, the estimator PAPER.md Appendix B writes; biased, consistent, needs no N.
- ``"mws"``: minibatch-weighted sampling (Chen et al. 2018, sec. 4.1): w_ij = 1/(N B). It is a lower
  bound whose value is the batch estimate minus log N in every log-density, so a total correlation
  shifts by +(K-1) log N and a sum of K marginal KLs by -K log N; the gradients equal the batch
  estimator's. Use it to reproduce beta-TCVAE, not to read off a KL value.
- ``"mss"``: minibatch-stratified sampling (Chen et al. 2018, appendix). Derived here from the
  stratified identity p(z) = (1/N) p(z|x_i) + ((N-1)/N) * mean_{n != i} p(z|x_n): sample x_i belongs to
  the stratum {x_i} (weight 1/N, known exactly) and the other B-1 batch members are a simple random
  sample, without replacement, of the other N-1 stratum, whose mean they estimate without bias. So
  w_ii = 1/N and w_ij = (N-1) / (N (B-1)) for j != i; each row sums to 1 and the inner sum is an
  unbiased estimate of p(z_i) (tests/test_estimators.py checks this by enumerating every batch).
  Chen et al.'s published matrix gives the same diagonal and the same off-diagonal total (N-1)/N but
  splits it unevenly (1/(B-1) on B-2 members, (N-B+1)/(N(B-1)) on one designated member); both are
  unbiased and differ by O(1/(N B)) per weight; the symmetric split here treats every member alike.
  With N = B it reduces exactly to the batch estimator.

Over several processes (imae_kit.distributed) each holds a slice of b = B/N rows of the global batch: the
aggregate is then a local-by-global rectangle, the local samples z_i (global rows ``row_offset`` to
``row_offset + b``) against the gathered mu_j, sigma_j of all B examples, with the rows of the B x B weight
matrix that belong to those samples. Every estimate that is a mean over i (TC, the KLs) is then the mean
over this process's rows, and the mean over processes is the global batch's estimate.
"""

from __future__ import annotations

import math

import torch

ESTIMATORS = ("batch", "mws", "mss")
LOG_2PI = math.log(2.0 * math.pi)
HALF_LOG_2PI = 0.5 * LOG_2PI
# Exponents of a logsumexp more than this far below its largest term are floored here: CPU exp is 30-50x
# slower where its result underflows (float32 below about -87, float64 below about -745), and a trained
# encoder's sharp dimensions put most of the B x B pairs there. A floored term weighs e^-85 ~ 1e-37 against
# the largest term's 1, far below either dtype's resolution of the sum, in the value and in the gradient.
EXP_FLOOR = -85.0


def logsumexp_floored(x: torch.Tensor, dim: int) -> torch.Tensor:
    """log sum exp(x) over ``dim`` with every term more than ``-EXP_FLOOR`` nats below the largest counted as
    e^EXP_FLOOR of it (no underflowing exp); where the largest term is not finite, that term (-inf, inf, nan),
    as torch.logsumexp gives. Differentiable by autograd with no exp in its backward pass."""
    top = x.amax(dim=dim, keepdim=True).detach()   # a constant shift: the gradient is softmax(x) exactly
    finite = torch.isfinite(top)
    shift = torch.where(finite, top, torch.zeros_like(top))
    out = (x - shift).clamp_min(EXP_FLOOR).exp().sum(dim=dim).log() + shift.squeeze(dim)
    return torch.where(finite.squeeze(dim), out, top.squeeze(dim))


def log_normal_density(z: torch.Tensor, mu: torch.Tensor | float, sigma: torch.Tensor | float) -> torch.Tensor:
    """Elementwise log N(z; mu, sigma^2) (the Gaussian densities of PAPER.md, Model); broadcasts."""
    mu = torch.as_tensor(mu, dtype=z.dtype, device=z.device)
    sigma = torch.as_tensor(sigma, dtype=z.dtype, device=z.device)
    return -0.5 * ((z - mu) / sigma).square() - sigma.log() - HALF_LOG_2PI


def log_density_matrix(z: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """log p(z_ik | x_j) for all pairs: z, mu, sigma [B, K] -> [B, B, K], index [i, j, k] (PAPER.md App. B)."""
    if z.shape != mu.shape or mu.shape != sigma.shape or z.dim() != 2:
        shapes = ", ".join(str(tuple(t.shape)) for t in (z, mu, sigma))
        raise ValueError(f"z, mu and sigma must all be [B, K]; got {shapes}")
    return log_normal_density(z.unsqueeze(1), mu.unsqueeze(0), sigma.unsqueeze(0))


def log_importance_weights(batch_size: int, estimator: str = "batch", dataset_size: int | None = None, *,
                           dtype: torch.dtype = torch.float32, device: torch.device | str | None = None,
                           rows: tuple[int, int] | None = None) -> torch.Tensor:
    """log w_ij [B, B] of the batch, MWS or MSS estimator of p(z_i) = sum_j w_ij p(z_i|x_j) (PAPER.md App. B);
    with ``rows = (offset, count)`` only rows offset .. offset + count - 1 ([count, B]: one process's slice)."""
    b = int(batch_size)
    if b < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    offset, count = rows if rows is not None else (0, b)
    if offset < 0 or count < 1 or offset + count > b:
        raise ValueError(f"rows {offset}..{offset + count - 1} lie outside a batch of {b}")
    if estimator == "batch":
        return torch.full((count, b), -math.log(b), dtype=dtype, device=device)
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {list(ESTIMATORS)}, got {estimator!r}")
    if dataset_size is None or int(dataset_size) < b:
        raise ValueError(
            f"estimator {estimator!r} needs the data-set size N >= batch size {b}; got N = {dataset_size!r}"
        )
    n = int(dataset_size)
    if estimator == "mws":
        return torch.full((count, b), -math.log(n * b), dtype=dtype, device=device)
    # "mss"
    if b < 2:
        raise ValueError("estimator 'mss' needs a batch of at least 2 examples")
    off = math.log(n - 1) - math.log(n) - math.log(b - 1)
    log_w = torch.full((count, b), off, dtype=dtype, device=device)
    local = torch.arange(count, device=device)
    log_w[local, local + offset] = -math.log(n)  # w_ii: sample i against its own x_i
    return log_w


def _weighted_logsumexp(log_q: torch.Tensor, estimator: str, dataset_size: int | None,
                        row_offset: int = 0) -> torch.Tensor:
    """logsumexp_j (log w_ij + log_q[i, j, ...]) over dim 1 of a [b, B, ...] tensor (b = B, or the rows
    ``row_offset`` .. ``row_offset + b - 1`` of one process)."""
    if log_q.dim() < 2 or row_offset + log_q.shape[0] > log_q.shape[1]:
        raise ValueError(f"expected a pairwise matrix [B, B, ...] (or rows of one, starting at row {row_offset}), "
                         f"got {tuple(log_q.shape)}")
    rows, b = log_q.shape[0], log_q.shape[1]
    if estimator == "batch":  # constant weights 1/B: no [B, B, ...] weight tensor to add and differentiate
        return logsumexp_floored(log_q, dim=1) - math.log(b)
    log_w = log_importance_weights(b, estimator, dataset_size, dtype=log_q.dtype, device=log_q.device,
                                   rows=(row_offset, rows))
    log_w = log_w.reshape(rows, b, *([1] * (log_q.dim() - 2)))
    return logsumexp_floored(log_q + log_w, dim=1)


def log_aggregate_density(log_q: torch.Tensor, estimator: str = "batch",
                          dataset_size: int | None = None) -> torch.Tensor:
    """log p(z_i) [B] from the [B, B, K] matrix: logsumexp_j sum_k log p(z_ik|x_j) + log w_ij (PAPER.md App. B)."""
    return _weighted_logsumexp(log_q.sum(dim=2), estimator, dataset_size)


def log_aggregate_marginals(log_q: torch.Tensor, estimator: str = "batch",
                            dataset_size: int | None = None) -> torch.Tensor:
    """log p(z_ik) [B, K] from the [B, B, K] matrix: logsumexp_j log p(z_ik|x_j) + log w_ij (PAPER.md App. B)."""
    return _weighted_logsumexp(log_q, estimator, dataset_size)


def log_joint_aggregate(z: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor, estimator: str = "batch",
                        dataset_size: int | None = None, row_offset: int = 0) -> torch.Tensor:
    """log p(z_i) [B] without the [B, B, K] matrix (PAPER.md App. B): sum_k log p(z_ik | x_j) is a quadratic form,

        sum_k log N(z_ik; mu_jk, s_jk^2) = -1/2 sum_k z_ik^2 a_jk + sum_k z_ik mu_jk a_jk + c_j,   a = 1/s^2,

    so the [B, B] matrix of joint log-densities is two [B, K] x [K, B] products. They are taken in float64:
    with a up to e^18 (the encoder's smallest sigma) the expanded terms cancel far beyond float32's digits.
    ``z`` may be b rows (from ``row_offset``) of a batch whose B are ``mu`` and ``sigma``: then [b]."""
    z64, mu64, s64 = z.double(), mu.double(), sigma.double()
    a = s64.pow(-2)
    c = -(0.5 * mu64.square() * a + s64.log()).sum(dim=1) - z.shape[1] * HALF_LOG_2PI
    joint = -0.5 * z64.square() @ a.T + z64 @ (mu64 * a).T + c.unsqueeze(0)
    return _weighted_logsumexp(joint, estimator, dataset_size, row_offset).to(z.dtype)


class _MarginalLogSumExp(torch.autograd.Function):
    """logsumexp_j [log N(z_ik; mu_jk, s_jk^2) + log_w_ij] [B, K], in row chunks that stay in cache, with the
    backward pass recomputing each chunk instead of keeping the [B, B, K] matrix (as flash attention does)."""

    @staticmethod
    def forward(ctx, z, mu, sigma, log_w, rows):
        inv = sigma.reciprocal()
        base = -sigma.log() - HALF_LOG_2PI
        out = torch.empty_like(z)
        for a in range(0, z.shape[0], rows):
            q = _chunk_log_density(z[a:a + rows], mu, inv, base, log_w, a)[1]
            out[a:a + rows] = logsumexp_floored(q, dim=1)
        ctx.save_for_backward(z, mu, sigma, inv, base, out, log_w)
        ctx.rows = rows
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        z, mu, sigma, inv, base, out, log_w = ctx.saved_tensors
        grad_z, grad_mu, grad_sigma = torch.empty_like(z), torch.zeros_like(mu), torch.zeros_like(sigma)
        for a in range(0, z.shape[0], ctx.rows):
            t, q = _chunk_log_density(z[a:a + ctx.rows], mu, inv, base, log_w, a)
            gq = q.sub_(out[a:a + ctx.rows].unsqueeze(1)).clamp_min_(EXP_FLOOR).exp_()   # softmax weights
            gq.mul_(grad[a:a + ctx.rows].unsqueeze(1))
            grad_sigma += (gq * (t * t - 1.0)).sum(dim=0)     # d q / d s = (t^2 - 1) / s
            gt = gq.mul_(t).mul_(inv)                          # d q / d z = -t / s, d q / d mu = t / s
            grad_z[a:a + ctx.rows] = -gt.sum(dim=1)
            grad_mu += gt.sum(dim=0)
        return grad_z, grad_mu, grad_sigma * inv, None, None


def _chunk_log_density(z_rows: torch.Tensor, mu: torch.Tensor, inv: torch.Tensor, base: torch.Tensor,
                       log_w: torch.Tensor | None, start: int) -> tuple[torch.Tensor, torch.Tensor]:
    """t = (z_i - mu_j) / s_j and q = log N(z_i; mu_j, s_j^2) (+ log w_ij), both [rows, B, K]."""
    t = (z_rows.unsqueeze(1) - mu.unsqueeze(0)).mul_(inv.unsqueeze(0))
    q = (t * t).mul_(-0.5).add_(base.unsqueeze(0))
    if log_w is not None:
        q += log_w[start:start + z_rows.shape[0]].unsqueeze(2)
    return t, q


def log_marginal_aggregates(z: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor, estimator: str = "batch",
                            dataset_size: int | None = None, *, chunk_elements: int = 1 << 18,
                            row_offset: int = 0) -> torch.Tensor:
    """log p(z_ik) [B, K] (PAPER.md App. B) without keeping the [B, B, K] matrix: the same numbers as
    ``log_aggregate_marginals(log_density_matrix(z, mu, sigma))``, in chunks of about ``chunk_elements``;
    [b, K] for b rows ``z`` (from ``row_offset``) of the batch of ``mu`` and ``sigma``."""
    b = mu.shape[0]
    rows = max(1, chunk_elements // max(1, b * z.shape[1]))
    if estimator == "batch":
        return _MarginalLogSumExp.apply(z, mu, sigma, None, rows) - math.log(b)
    log_w = log_importance_weights(b, estimator, dataset_size, dtype=z.dtype, device=z.device,
                                   rows=(row_offset, z.shape[0]))
    return _MarginalLogSumExp.apply(z, mu, sigma, log_w, rows)


class BatchAggregate:
    """The aggregate posterior p(z) = sum_j w_ij p(z | x_j) of one batch, at the batch's own samples z_i.

    Computes log p(z_i) (``log_joint``, [B]) and log p(z_ik) (``log_marginals``, [B, K]) once each, on
    first use, without materialising the [B, B, K] matrix of ``log_density_matrix``; every quantity of
    PAPER.md Appendix B (Gaussian matching, total correlation, the KL of p(z) to a normal) is read off them.

    On one process of several, ``z`` [b, K] is its slice (global rows ``row_offset`` on) and ``mu``, ``sigma``
    [B, K] the gathered global batch: every estimate is then the mean over the slice's rows.
    """

    def __init__(self, z: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor, estimator: str = "batch",
                 dataset_size: int | None = None, row_offset: int = 0):
        if estimator not in ESTIMATORS:
            raise ValueError(f"estimator must be one of {list(ESTIMATORS)}, got {estimator!r}")
        if (mu.shape != sigma.shape or z.dim() != 2 or mu.dim() != 2 or z.shape[1] != mu.shape[1]
                or row_offset < 0 or row_offset + z.shape[0] > mu.shape[0]):
            shapes = ", ".join(str(tuple(t.shape)) for t in (z, mu, sigma))
            raise ValueError(f"z, mu and sigma must all be [B, K] (or z [b, K], rows {row_offset} on of a batch "
                             f"mu, sigma [B, K]); got {shapes}")
        if estimator != "batch":
            log_importance_weights(mu.shape[0], estimator, dataset_size)  # refuse a bad N before any work
        self.z, self.mu, self.sigma = z, mu, sigma
        self.estimator = estimator
        self.dataset_size = dataset_size
        self.row_offset = row_offset
        self._joint: torch.Tensor | None = None
        self._marginals: torch.Tensor | None = None

    @property
    def log_joint(self) -> torch.Tensor:
        """log p(z_i), [B]."""
        if self._joint is None:
            self._joint = log_joint_aggregate(self.z, self.mu, self.sigma, self.estimator, self.dataset_size,
                                              self.row_offset)
        return self._joint

    @property
    def log_marginals(self) -> torch.Tensor:
        """log p(z_ik), [B, K]."""
        if self._marginals is None:
            self._marginals = log_marginal_aggregates(self.z, self.mu, self.sigma, self.estimator,
                                                      self.dataset_size, row_offset=self.row_offset)
        return self._marginals

    def total_correlation(self) -> torch.Tensor:
        """TC(z) = KL(p(z) || prod_k p(z_k)) ~= mean_i [log p(z_i) - sum_k log p(z_ik)]."""
        return (self.log_joint - self.log_marginals.sum(dim=1)).mean()

    def marginal_kl_to_normal(self, scale: float = 1.0, *, per_dimension: bool = False) -> torch.Tensor:
        """sum_k KL(p(z_k) || N(0, scale^2)) ~= sum_k mean_i [log p(z_ik) - log r(z_ik)] ([K] if per_dimension)."""
        kl = (self.log_marginals - log_normal_density(self.z, 0.0, scale)).mean(dim=0)
        return kl if per_dimension else kl.sum()

    def kl_to_normal(self, scale: float = 1.0) -> torch.Tensor:
        """KL(p(z) || N(0, scale^2 I)) ~= mean_i [log p(z_i) - log r(z_i)]."""
        return (self.log_joint - log_normal_density(self.z, 0.0, scale).sum(dim=1)).mean()


def total_correlation(z: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor, estimator: str = "batch",
                      dataset_size: int | None = None) -> torch.Tensor:
    """TC(z) = KL(p(z) || prod_k p(z_k)) ~= mean_i [log p(z_i) - sum_k log p(z_ik)] (PAPER.md eq. 10, App. B)."""
    return BatchAggregate(z, mu, sigma, estimator, dataset_size).total_correlation()


def marginal_kl_to_normal(z: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor, scale: float = 1.0,
                          estimator: str = "batch", dataset_size: int | None = None, *,
                          per_dimension: bool = False) -> torch.Tensor:
    """sum_k KL(p(z_k) || N(0, scale^2)) ~= sum_k mean_i [log p(z_ik) - log r(z_ik)] (PAPER.md eq. 6, App. B)."""
    aggregate = BatchAggregate(z, mu, sigma, estimator, dataset_size)
    return aggregate.marginal_kl_to_normal(scale, per_dimension=per_dimension)


def aggregate_kl_to_normal(z: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor, scale: float = 1.0,
                           estimator: str = "batch", dataset_size: int | None = None) -> torch.Tensor:
    """KL(p(z) || N(0, scale^2 I)) ~= mean_i [log p(z_i) - log r(z_i)], term (5) of PAPER.md's baselines (App. B)."""
    return BatchAggregate(z, mu, sigma, estimator, dataset_size).kl_to_normal(scale)


def _finite(log_probs: torch.Tensor) -> torch.Tensor:
    """Replace log 0 = -inf by the most negative finite number, so that 0 log 0 = 0 without NaN gradients."""
    return log_probs.clamp_min(torch.finfo(log_probs.dtype).min)


def categorical_entropy(log_probs: torch.Tensor, dim: int = -1, *,
                        probs: torch.Tensor | None = None) -> torch.Tensor:
    """H(p) = -sum_y p(y) log p(y) over ``dim`` from normalised log-probabilities [..., K2] -> [...], with
    0 log 0 = 0 (PAPER.md eq. 7); ``probs``, when given, weighs the terms instead of exp(log_probs)."""
    p = log_probs.exp() if probs is None else probs
    return -(p * _finite(log_probs)).sum(dim=dim)


def entropy_of_probs(probs: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """``categorical_entropy`` in float64 from probabilities (0 log 0 = 0): the exact sums of an evaluation."""
    p = probs.to(torch.float64)
    return categorical_entropy(torch.log(p.clamp_min(1e-300)), dim, probs=p)


def log_mean_probs(log_probs: torch.Tensor) -> torch.Tensor:
    """log p(y) = log mean_n p(y|x_n): [B, K2] -> [K2], computed by logsumexp (PAPER.md eq. 7)."""
    return torch.logsumexp(log_probs, dim=0) - math.log(log_probs.shape[0])


def discrete_mutual_information(log_probs: torch.Tensor) -> torch.Tensor:
    """Batch I(x;y) = H(mean_n p(y|x_n)) - mean_n H(p(y|x_n)) from log p(y|x_n) [B, K2], a scalar (PAPER.md eq. 7)."""
    return categorical_entropy(log_mean_probs(log_probs)) - categorical_entropy(log_probs).mean()


def categorical_kl_to_uniform(log_probs: torch.Tensor) -> torch.Tensor:
    """KL(p || Uniform(K2)) = log K2 - H(p) over the last dim [..., K2] -> [...] (PAPER.md, baselines, r(y) uniform)."""
    return math.log(log_probs.shape[-1]) - categorical_entropy(log_probs)


def categorical_kl(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """KL(p || q) = sum_y p(y) (log p(y) - log q(y)) over the last dim [..., K2] -> [...] (PAPER.md eq. 11, VAT)."""
    return (log_p.exp() * (_finite(log_p) - _finite(log_q))).sum(dim=-1)


def step_aggregate(step, estimator: str = "batch") -> BatchAggregate:
    """The step's BatchAggregate for ``estimator``, built once per Step and shared by every term that asks
    (marginal_kl and total_correlation both need log p(z_ik); total_correlation and aggregate_kl log p(z_i)).

    Over several processes: this process's samples against the gathered global batch (a local-by-global
    rectangle), so the estimates are over the global batch (see imae_kit.distributed)."""
    def build() -> BatchAggregate:
        mu, sigma = step.posterior.mu, step.posterior.sigma
        gathered = step.shared("gathered mu, sigma", lambda: (step.gather(mu), step.gather(sigma)))
        return BatchAggregate(step.samples.z, gathered[0], gathered[1], estimator, step.dataset_size,
                              row_offset=getattr(step, "batch_offset", 0))
    return step.shared(("aggregate", estimator), build)
