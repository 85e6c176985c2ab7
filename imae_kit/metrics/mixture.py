"""Log-densities of the aggregate posterior q(z) = (1/M) sum_m q(z | x_m), a mixture of diagonal Gaussians.

Every continuous information measure in ``imae_kit.metrics`` (I(x;z_k), total correlation, the sampled MIG)
is an entropy of such a mixture, estimated by Monte Carlo:

    H(z_k) ~= -(1/S) sum_s log q(z_sk),   z_s ~ q(z | x_s),  x_s drawn uniformly from the mixture's points,

with each log q(z_sk) = logsumexp_m log N(z_sk; mu_mk, sigma_mk^2) - log M computed exactly over all M
components. That is S * M * K Gaussian log-densities, done here in chunks of at most ``chunk_elements``
(K x S_chunk x M_chunk) so the memory in use is bounded whatever S and M are:

    peak extra memory ~= workers * 3 * 4 bytes * chunk_elements
                         (per worker thread: two float32 work buffers and one padded input copy;
                          workers = torch.get_num_threads())

Sample chunks are spread over ``workers`` threads that each run single-threaded torch ops (``map_chunks``).

Numerics: for the per-dimension sums each sample gets a shift c_sk = max(log q(z_sk | own component),
max_m log N-normaliser_mk - 60), so every exponentiated term is at most e^60 (no float32 overflow for up to
~10^11 components) and the sample's own component, when it is in the mixture, contributes at least e^-0
(no underflow). Exponents below -85 are floored at -85 before exp (float32 exp is slow where its result is
subnormal or zero): each floored term adds at most e^-85 ~ 1e-37, against a sum of at least e^-60 ~ 1e-26
from the sample's own component. Sums are accumulated in float64 across chunks.

Two interchangeable kernels compute the per-dimension sums: an eager one (plain torch ops) and one fused by
``torch.compile`` (faster, at a one-off compile cost), used by ``kernel="auto"`` only when the work is large
enough to repay it, and silently replaced by the eager one if compiling fails (benchmarks/mig_speed.py
times both).
"""

from __future__ import annotations

import contextlib
import logging
import math
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator, Sequence

import torch

from imae_kit.estimators import LOG_2PI

SHIFT_HEADROOM = 60.0          # nats below the largest normaliser at which the shift is floored
DEFAULT_CHUNK_ELEMENTS = 1 << 21  # 2,097,152 float32 per work buffer: 8 MiB
SAMPLE_CHUNK = 64              # samples per chunk; the component chunk fills the rest of chunk_elements
AUTO_COMPILE_WORK = 2e10       # kernel="auto" compiles above this many Gaussian evaluations
EXP_FLOOR = -85.0              # exponents are floored here: exp of float32 below ~-87 is subnormal and slow


def _eager_chunk(z: torch.Tensor, mu: torch.Tensor, inv: torch.Tensor, logc: torch.Tensor) -> torch.Tensor:
    """sum_m exp(logc[k,s,m] - 0.5 ((z[k,s] - mu[k,m]) inv[k,m])^2) for z [K,S], mu/inv [K,M], logc [K,S,M]."""
    buf = z.unsqueeze(2) - mu.unsqueeze(1)
    buf.mul_(inv.unsqueeze(1)).square_().mul_(-0.5).add_(logc).clamp_min_(EXP_FLOOR).exp_()
    return buf.sum(-1)


def _fused_chunk(z: torch.Tensor, mu: torch.Tensor, inv: torch.Tensor, c: torch.Tensor,
                 shift: torch.Tensor) -> torch.Tensor:
    """The same sum as ``_eager_chunk`` written for torch.compile: c [K,M] normalisers, shift [K,S]."""
    d = (z.unsqueeze(2) - mu.unsqueeze(1)) * inv.unsqueeze(1)
    return torch.exp((c.unsqueeze(1) - shift.unsqueeze(2) - 0.5 * d * d).clamp_min(EXP_FLOOR)).sum(-1)


_COMPILED: Callable | None = None
_COMPILE_FAILED = False

# torch.compile on a machine without a GPU logs this when a CUDA toolkit folder exists (it looks for one while
# building the CPU kernel): harmless here, where no CUDA is used. Only this message is silenced.
CUDA_HOME_LOGGER = "torch.utils.cpp_extension"
CUDA_HOME_NOTICE = "No CUDA runtime is found, using CUDA_HOME="


class _DropCudaHomeNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(CUDA_HOME_NOTICE)


@contextlib.contextmanager
def quiet_cuda_home_notice() -> Iterator[None]:
    """Drop torch's "No CUDA runtime is found, using CUDA_HOME=..." log line while the block runs (every other
    message of that logger, and every warning, still shows)."""
    logger, drop = logging.getLogger(CUDA_HOME_LOGGER), _DropCudaHomeNotice()
    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)


def _compiled_kernel() -> Callable | None:
    """The torch.compile'd fused kernel, or None if compiling is not possible here."""
    global _COMPILED, _COMPILE_FAILED
    if _COMPILED is None and not _COMPILE_FAILED:
        try:
            fn = torch.compile(_fused_chunk, dynamic=True)
            k, s, m = 2, SAMPLE_CHUNK, 256
            with quiet_cuda_home_notice():  # the first call compiles
                fn(torch.zeros(k, s), torch.zeros(k, m), torch.ones(k, m), torch.zeros(k, m), torch.zeros(k, s))
            _COMPILED = fn
        except Exception as exc:  # no C++ compiler, unsupported platform, ...
            _COMPILE_FAILED = True
            warnings.warn(f"torch.compile of the mixture kernel failed ({type(exc).__name__}); using the eager one",
                          RuntimeWarning, stacklevel=2)
    return _COMPILED


def choose_kernel(kernel: str, work: float) -> str:
    """Resolve ``"auto" | "eager" | "compiled"`` into the kernel actually used for ``work`` evaluations."""
    if kernel not in ("auto", "eager", "compiled"):
        raise ValueError(f"kernel must be 'auto', 'eager' or 'compiled', got {kernel!r}")
    if kernel == "eager" or (kernel == "auto" and work < AUTO_COMPILE_WORK):
        return "eager"
    return "compiled" if _compiled_kernel() is not None else "eager"


class MixtureKernel:
    """Per-dimension log-sums  log sum_m N(z_sk; mu_mk, sigma_mk^2)  over a set of mixture components.

    ``mu``, ``sigma``: [M, K] components. ``kernel``: "eager" or "compiled" (resolve "auto" with
    ``choose_kernel`` first). ``chunk_elements`` bounds each work buffer (K x S_chunk x M_chunk floats).
    """

    def __init__(self, mu: torch.Tensor, sigma: torch.Tensor, *, kernel: str = "eager",
                 chunk_elements: int = DEFAULT_CHUNK_ELEMENTS, max_normaliser: torch.Tensor | None = None,
                 workers: int | None = None):
        if mu.shape != sigma.shape or mu.dim() != 2:
            raise ValueError(f"mu and sigma must both be [M, K], got {tuple(mu.shape)} and {tuple(sigma.shape)}")
        self.kernel = kernel
        self.num_components, self.dims = int(mu.shape[0]), int(mu.shape[1])
        self.mu = mu.detach().to(torch.float32).t().contiguous()           # [K, M]
        self.inv = sigma.detach().to(torch.float32).reciprocal().t().contiguous()
        self.c = (-torch.log(sigma.detach().to(torch.float32)) - 0.5 * LOG_2PI).t().contiguous()  # [K, M]
        # the largest normaliser over the components (or over a larger set, when given): the shift floor
        self.max_normaliser = self.c.max(dim=1).values if max_normaliser is None else max_normaliser
        per_sample = max(1, chunk_elements // max(1, self.dims * SAMPLE_CHUNK))
        if kernel == "compiled":  # fixed shapes: one compiled graph, components padded to a multiple of 256
            per_sample = max(256, per_sample // 256 * 256)
        self.component_chunk = per_sample
        self.workers = torch.get_num_threads() if workers is None else max(1, int(workers))

    def shift(self, z: torch.Tensor, own_log_density: torch.Tensor) -> torch.Tensor:
        """The per-sample shift c_sk = max(own log-density, max normaliser - 60), shape [S, K]."""
        return torch.maximum(own_log_density, (self.max_normaliser - SHIFT_HEADROOM).unsqueeze(0))

    def log_sum(self, z: torch.Tensor, own_log_density: torch.Tensor,
                advance: Callable[[int], None] | None = None) -> torch.Tensor:
        """log sum_m N(z_sk; mu_mk, sigma_mk^2) for z [S, K]; ``own_log_density`` [S, K] sets the shift."""
        s_total = int(z.shape[0])
        shift = self.shift(z, own_log_density).to(torch.float32)
        out = torch.empty(s_total, self.dims, dtype=torch.float64)
        zt, shift_t = z.to(torch.float32).t().contiguous(), shift.t().contiguous()   # [K, S]

        def one_chunk(a: int) -> int:
            b = min(a + SAMPLE_CHUNK, s_total)
            acc = self._sum_chunk(zt[:, a:b], shift_t[:, a:b])
            out[a:b] = (acc.log() + shift_t[:, a:b].double()).t()
            return b - a

        for n in map_chunks(one_chunk, range(0, s_total, SAMPLE_CHUNK), self.workers):
            if advance is not None:
                advance(n * self.num_components)
        return out

    def _sum_chunk(self, z: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
        """sum_m exp(log N(z | m) - shift) for one sample chunk z [K, S_c], in float64, shape [K, S_c]."""
        k, s = z.shape
        acc = torch.zeros(k, s, dtype=torch.float64)
        step = self.component_chunk
        if self.kernel == "compiled":
            fn = _compiled_kernel()
            if s < SAMPLE_CHUNK:  # pad the samples to the compiled shape; padded rows are dropped
                pad = SAMPLE_CHUNK - s
                z = torch.cat([z, z.new_zeros(k, pad)], 1)
                shift = torch.cat([shift, shift.new_zeros(k, pad)], 1)
            for a in range(0, self.num_components, step):
                b = min(a + step, self.num_components)
                mu, inv, c = self.mu[:, a:b], self.inv[:, a:b], self.c[:, a:b]
                if b - a < step:  # pad the components with ones that contribute exp(-inf) = 0
                    pad = step - (b - a)
                    mu = torch.cat([mu, mu.new_zeros(k, pad)], 1)
                    inv = torch.cat([inv, inv.new_ones(k, pad)], 1)
                    c = torch.cat([c, c.new_full((k, pad), -math.inf)], 1)
                acc += fn(z, mu, inv, c, shift)[:, :s].double()
            return acc
        for a in range(0, self.num_components, step):
            b = min(a + step, self.num_components)
            logc = self.c[:, None, a:b] - shift.unsqueeze(2)
            acc += _eager_chunk(z, self.mu[:, a:b], self.inv[:, a:b], logc).double()
        return acc


def map_chunks(fn: Callable[[int], int], starts: Sequence[int], workers: int) -> Iterator[int]:
    """``map(fn, starts)``, run by ``workers`` threads that each use one intra-op thread when workers > 1.

    Independent chunks on separate threads, instead of every tensor op split across the cores, avoid one
    synchronisation per op (costly on a machine shared with other processes). The torch ops release the
    GIL. Results come back in order.
    """
    if workers <= 1 or len(starts) <= 1:
        yield from map(fn, starts)
        return
    with ThreadPoolExecutor(max_workers=workers, initializer=torch.set_num_threads, initargs=(1,)) as pool:
        yield from pool.map(fn, starts)


def sample_posterior(mu: torch.Tensor, sigma: torch.Tensor, generator: torch.Generator | None) -> tuple[
        torch.Tensor, torch.Tensor]:
    """One draw z ~ N(mu, sigma^2) per row and its own per-dimension log-density, both [S, K]."""
    eps = torch.randn(mu.shape, generator=generator, dtype=torch.float32)
    z = mu.to(torch.float32) + sigma.to(torch.float32) * eps
    own = -0.5 * eps * eps - torch.log(sigma.to(torch.float32)) - 0.5 * LOG_2PI
    return z, own


def joint_log_sum(z: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor, *,
                  chunk_elements: int = DEFAULT_CHUNK_ELEMENTS, advance: Callable[[int], None] | None = None,
                  workers: int | None = None) -> torch.Tensor:
    """log sum_m prod_k N(z_sk; mu_mk, sigma_mk^2) for z [S, K] over components mu, sigma [M, K]; shape [S].

    A proper running logsumexp (max-shifted per chunk), since a K-dimensional log-density can span far
    more than float32's exponent range.
    """
    s_total, k = z.shape
    m_total = int(mu.shape[0])
    mu_t = mu.to(torch.float32).t().contiguous()
    inv_t = sigma.to(torch.float32).reciprocal().t().contiguous()
    c_sum = (-torch.log(sigma.to(torch.float32)) - 0.5 * LOG_2PI).sum(1)  # [M]
    zt = z.to(torch.float32).t().contiguous()
    step = max(1, chunk_elements // max(1, k * SAMPLE_CHUNK))
    out = torch.empty(s_total, dtype=torch.float64)

    def one_chunk(a: int) -> int:
        b = min(a + SAMPLE_CHUNK, s_total)
        running = torch.full((b - a,), -math.inf, dtype=torch.float64)
        for c0 in range(0, m_total, step):
            c1 = min(c0 + step, m_total)
            d = (zt[:, a:b, None] - mu_t[:, None, c0:c1]).mul_(inv_t[:, None, c0:c1])
            log_joint = d.square_().sum(0).mul_(-0.5).add_(c_sum[c0:c1])   # [S_c, M_c]
            running = torch.logaddexp(running, torch.logsumexp(log_joint, dim=1).double())
        out[a:b] = running
        return b - a

    for n in map_chunks(one_chunk, range(0, s_total, SAMPLE_CHUNK),
                        torch.get_num_threads() if workers is None else workers):
        if advance is not None:
            advance(n * m_total)
    return out

