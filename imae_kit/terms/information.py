"""Terms on the discrete code y: the batch mutual information I(x;y) and virtual adversarial smoothness."""

from __future__ import annotations

import contextlib
import functools
import math
import sys
import warnings
import weakref
from typing import Any, Callable, ClassVar, Iterator

import attrs
import torch
from torch import nn
from torch.autograd import forward_ad

from imae_kit.estimators import categorical_entropy, categorical_kl, log_mean_probs
from imae_kit.errors import RecipeError
from imae_kit.params import choice_field, float_field, int_field
from imae_kit.precision import full_precision, terms_autocast
from imae_kit.registry import register_term
from imae_kit.step import Step


@register_term("discrete_mi")
@attrs.frozen
class DiscreteMutualInformation:
    """I(x;y) on the batch: H(mean_n p(y|x_n)) - mean_n H(p(y|x_n)) (PAPER.md eq. 7).

    Exact for the empirical distribution of the batch; computed over the global batch (Step.gather),
    since the estimate improves as the batch grows (PAPER.md Prop. 2). At most log K2.

    ``conditional_weight`` c generalises it to H(Y) - c H(Y|X) (c = 1, the default, is I(x;y) and the
    paper's term). IMSAT (Hu et al. 2017) weights the conditional entropy by 1/mu = 1/4 of the marginal's:
    a small c keeps the categories balanced while the assignments are still soft, instead of
    making every assignment confident before the clusters have formed.
    """

    sense: ClassVar[str] = "maximize"
    conditional_weight: float = float_field(1.0, min=0.0, doc="c in H(Y) - c H(Y|X); 1 is I(x;y) (the paper), "
                                            "IMSAT uses 1/4")

    def __call__(self, step: Step) -> torch.Tensor:
        """Batch H(Y) - c H(Y|X) from the gathered log p(y|x_n), in nats (I(x;y) at c = 1)."""
        log_probs = step.gather(step.posterior.logits)  # at c = 1 exactly estimators.discrete_mutual_information
        return (categorical_entropy(log_mean_probs(log_probs))
                - self.conditional_weight * categorical_entropy(log_probs).mean())


def module_behind(encode: Callable[..., Any]) -> nn.Module | None:
    """The nn.Module that ``encode`` runs: the module itself, the owner of a bound method, or inside a partial."""
    if isinstance(encode, nn.Module):
        return encode
    owner = getattr(encode, "__self__", None)
    if isinstance(owner, nn.Module):
        return owner
    if isinstance(encode, functools.partial):
        return module_behind(encode.func)
    return None


@contextlib.contextmanager
def running_statistics_frozen(module: nn.Module | None) -> Iterator[None]:
    """Within the block, normalisation layers in training mode use batch statistics but do not update
    their running statistics (nor num_batches_tracked); on exit every flag is restored.

    Extra forward passes (VAT's perturbed inputs) must not move BatchNorm's running mean and variance,
    which are what the model uses at evaluation. We switch ``track_running_stats`` off on every
    submodule in training mode that has it on: PyTorch's BatchNorm then normalises with the batch
    statistics and leaves its buffers alone. Saving and copying the buffers back instead would be
    wrong here: the copy bumps their autograd version and breaks the main backward pass.
    """
    switched: list[nn.Module] = []
    if module is not None:
        for m in module.modules():
            if m.training and getattr(m, "track_running_stats", False) is True:
                m.track_running_stats = False
                switched.append(m)
    try:
        yield
    finally:
        for m in switched:
            m.track_running_stats = True


def _unit_rows(d: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
    """Scale each example (dim 0) of ``d`` to unit L2 norm; divide by the max first to avoid underflow.

    With ``keep`` (unit rows of the same shape), an example of ``d`` that is all zero or not finite
    is replaced by its row of ``keep``; the test costs one comparison per example, on the row maxima."""
    flat = d.reshape(d.shape[0], -1)
    tiny = torch.finfo(d.dtype).tiny
    peak = flat.abs().amax(dim=1, keepdim=True)  # NaN if the row holds a NaN, 0 if it is all zero
    flat = flat / peak.clamp_min(tiny)
    flat = flat / flat.norm(dim=1, keepdim=True).clamp_min(tiny)
    if keep is not None:
        usable = torch.isfinite(peak) & (peak > 0)
        flat = torch.where(usable, flat, keep.reshape(flat.shape))
    return flat.reshape(d.shape)


HVP_METHODS = ("exact", "finite_difference")


@register_term("vat")
@attrs.frozen
class VirtualAdversarialSmoothness:
    """Virtual adversarial loss E_x KL(p(y|x) || p(y|x + r_adv)), ||r_adv|| = eps (PAPER.md eq. 11, footnote 2).

    r_adv approximates argmax_{||r|| <= eps} KL(p(y|x) || p(y|x + r)) by ``power_iterations`` steps of
    the power method on H, the Hessian of that KL in r at r = 0 (Miyato et al. 2018: one iteration from a
    random direction; eps = 1 as in every experiment of the paper). The norm is per example over all pixels.

    ``hvp`` says how each iteration takes the product H d:

    - ``"exact"`` (the default): at r = 0 the target is p = p(y|x) itself, so H = J^T (diag p - p p^T) J
      with J the Jacobian of the logits in x (the KL's second-order term vanishes there). J d comes from one
      forward-mode pass (``torch.autograd.forward_ad``) and J^T u from one reverse pass to the input, both in
      the recipe's precision: H d is a product of linear maps, with no difference to lose to rounding.
    - ``"finite_difference"``: Miyato et al.'s grad_r KL at r = xi d, divided by xi. With xi = 1e-6 this
      lives at float32's rounding level: on binary images such as dSprites a pixel at 1 does not move at all
      (1 + 1e-8 rounds to 1), and at initialisation the median cosine between this product and H d (float64)
      was 0.00 on dSprites and 0.16 on MNIST (``benchmarks/vat_direction.py``). Under bf16 the power
      method runs with the networks in fp32 (``imae_kit.precision.full_precision``) against an fp32 target
      p(y|x), since xi is far below bf16's resolution too.

    An example whose product vanishes (all zero, or not finite) keeps its current (at first random)
    direction, so every perturbation has norm eps. The final pass at x + r_adv runs in the recipe's precision.

    ``eps_knn`` = k > 0 gives each example its own radius, eps times its L2 distance to its k-th nearest
    other training image (IMSAT, Hu et al. 2017, use k = 10 and eps = 0.25): dense regions of the data are
    perturbed less than sparse ones. The distances are computed once per data set by brute force
    (``knn_distances``; about half a minute for MNIST's 60,000 images on two cores), and refused for a set
    where that would take hours (dSprites).

    PAPER.md eq. 11 writes the cross-entropy H(p(y|x), p(y|x+r)); it equals this KL plus H(p(y|x)),
    which carries no gradient because the target p(y|x) is detached, so we report the KL (0 for a
    perfectly smooth encoder). Gradients reach the encoder only through p(y|x + r_adv).

    The extra forward passes go through ``step.encode`` with the running statistics of normalisation
    layers frozen (see ``running_statistics_frozen``), found through the module that ``step.encode``
    belongs to: pass a bound method such as ``model.encode`` or the encoder module itself. The exact
    product needs an encoder that forward-mode AD can run through (every built-in body can); a plugin body
    that cannot gets a clear error naming ``hvp = "finite_difference"``.
    """

    sense: ClassVar[str] = "minimize"
    eps: float = float_field(1.0, min=0.0, min_exclusive=True,
                             doc="radius of the adversarial perturbation (L2, per example)")
    xi: float = float_field(1e-6, min=0.0, min_exclusive=True,
                            doc="finite-difference step of the power method (Miyato et al.)")
    power_iterations: int = int_field(1, min=1, doc="power-method iterations to find the adversarial direction")
    eps_knn: int = int_field(0, min=0, doc="0: radius eps for every example; k > 0: eps times the example's "
                             "distance to its k-th nearest training image (IMSAT: k = 10, eps = 0.25)")
    hvp: str = choice_field("exact", HVP_METHODS, doc="how the power method takes the Hessian-vector product: "
                            "'exact' (forward- and reverse-mode AD, in the recipe's precision) or "
                            "'finite_difference' (Miyato et al.'s step xi, fp32 networks)")

    def __call__(self, step: Step) -> torch.Tensor:
        """Mean over the batch of KL(p(y|x) || p(y|x + r_adv)) in nats."""
        x = step.x.detach()
        target = step.posterior.logits.detach()
        module = module_behind(step.encode)
        if module is None:
            warnings.warn("vat: step.encode is not an nn.Module nor a bound method of one; BatchNorm running "
                          "statistics cannot be protected from VAT's extra forward passes", stacklevel=2)
        with running_statistics_frozen(module):  # one guard over every extra pass of the step
            r_adv = self._power_method(step.encode, x, target, exact_target=step.precision != "fp32")
            if self.eps_knn:
                r_adv = r_adv * self.example_scale(step).reshape(-1, *([1] * (x.dim() - 1)))
            return categorical_kl(target, step.encode(x + r_adv).logits).mean()

    def prepare(self, data: Any) -> None:
        """Called once by the trainer with the training set, before any file is written: with ``eps_knn``,
        compute the distances now (or refuse the data set with a RecipeError)."""
        if self.eps_knn:
            knn_distances(data, self.eps_knn)

    def example_scale(self, step: Step) -> torch.Tensor:
        """[B] what multiplies eps for each example: with ``eps_knn`` = k, the L2 distance from the example
        to its k-th nearest other training image (``knn_distances``, computed once per data set)."""
        if step.index is None or step.data is None:
            raise RecipeError("vat: eps_knn needs to know which training images the batch holds (Step.index and "
                              "Step.data, which the trainer sets); set objective.terms.vat.params.eps_knn = 0 "
                              "for a fixed radius")
        table = knn_distances(step.data, self.eps_knn)
        return table[step.index.to(table.device)].to(device=step.x.device, dtype=step.x.dtype)

    def adversarial_perturbation(self, encode: Callable[[torch.Tensor], Any], x: torch.Tensor,
                                 target: torch.Tensor, *, exact_target: bool = False) -> torch.Tensor:
        """r_adv [B, ...]: eps times the unit direction found by the power method (no graph attached).
        ``target`` (the logits of p(y|x)) and ``exact_target`` (recompute it in fp32, for a ``target`` from a
        bf16 pass) serve the finite difference; the exact product takes p(y|x) from its own pass at x."""
        with running_statistics_frozen(module_behind(encode)):
            return self._power_method(encode, x, target, exact_target=exact_target)

    def _power_method(self, encode: Callable[[torch.Tensor], Any], x: torch.Tensor, target: torch.Tensor,
                      exact_target: bool = False) -> torch.Tensor:
        """``adversarial_perturbation`` without the guard on normalisation statistics (the caller holds it)."""
        if self.hvp == "exact":
            return self._power_iterations(x, lambda d: hessian_vector_product(encode, x, d))
        with full_precision():  # the finite difference needs fp32 networks (see the class docstring)
            if exact_target:
                with torch.no_grad():
                    target = encode(x).logits
            return self._iterate(encode, x, target)

    def _finite_difference(self, encode: Callable[[torch.Tensor], Any], x: torch.Tensor, target: torch.Tensor,
                           d: torch.Tensor) -> torch.Tensor:
        """grad_r KL(target || p(y|x + r)) at r = xi d: xi H d, to rounding."""
        probe = (self.xi * d).requires_grad_(True)
        # autocast off around the backward too: it would otherwise run the probe's gradient in bf16
        with torch.enable_grad(), terms_autocast(x.device.type):
            kl = categorical_kl(target, encode(x + probe).logits).sum()
            (grad,) = torch.autograd.grad(kl, probe)
        return grad.detach()

    def _iterate(self, encode: Callable[[torch.Tensor], Any], x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The power method with the finite difference, in whatever precision the networks run now."""
        return self._power_iterations(x, lambda d: self._finite_difference(encode, x, target, d))

    def _power_iterations(self, x: torch.Tensor, product: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """eps times the power method's unit direction from a random start, ``product(d)`` taking H d."""
        d = _unit_rows(torch.randn_like(x))
        for _ in range(self.power_iterations):
            # An example whose product vanished (below rounding, or all zero) or is not finite keeps its
            # current direction, so that every example is still perturbed by exactly eps.
            d = _unit_rows(product(d), keep=d)
        return self.eps * d


# torch's forward-mode AD imports its jvp decompositions (this module) on first use, and they are built
# with torch.jit.script, which torch 2.14 warns is deprecated: a notice about torch's own internals, printed
# once into every run's log. Only that message is silenced, and only until that import has happened: a
# catch_warnings block on every step would also reset Python's once-per-location warning registry, so that
# any other warning repeated in the training loop would print on every step.
JIT_SCRIPT_NOTICE = r"`torch\.jit\.script` is deprecated"
JVP_DECOMPOSITIONS = "torch._decomp.decompositions_for_jvp"


@contextlib.contextmanager
def quiet_jit_script_notice() -> Iterator[None]:
    """Drop torch's FutureWarning about torch.jit.script while the block runs (every other warning shows);
    a no-op once torch's jvp decompositions, the only source of that notice here, are imported."""
    if JVP_DECOMPOSITIONS in sys.modules:
        yield
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=JIT_SCRIPT_NOTICE, category=FutureWarning)
        yield


def hessian_vector_product(encode: Callable[[torch.Tensor], Any], x: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """H d [B, ...] with H, per example, the Hessian in r of KL(p(y|x) || p(y|x + r)) at r = 0, where the
    KL's target is p(y|x) itself: H = J^T F J, F = diag(p) - p p^T the softmax's Jacobian, J that of the
    logits in x. J d by forward-mode AD, then J^T (F J d) by a reverse pass to x (no parameter gradients);
    the networks run in whatever precision the caller's autocast gives them, F in fp32."""
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        try:
            with quiet_jit_script_notice(), forward_ad.dual_level():
                logits, jd = forward_ad.unpack_dual(encode(forward_ad.make_dual(xg, d.to(x.dtype))).logits)
        except (NotImplementedError, RuntimeError) as exc:
            if "forward AD" not in str(exc) and "jvp" not in str(exc) and "dtype" not in str(exc):
                raise
            raise RecipeError(f"vat: hvp = 'exact' needs an encoder that forward-mode AD can run through, and "
                              f"this one cannot ({exc}); set objective.terms.vat.params.hvp = "
                              f"'finite_difference' (Miyato et al.'s finite difference)") from exc
        if jd is None:  # the logits do not depend on x
            return torch.zeros_like(x)
        wide = torch.promote_types(logits.dtype, torch.float32)  # F in fp32 at least (float64 stays float64)
        with terms_autocast(x.device.type):
            p = logits.detach().to(wide).softmax(-1)
            jd = jd.detach().to(wide)
            u = p * (jd - (p * jd).sum(-1, keepdim=True))
        (hd,) = torch.autograd.grad(logits, xg, grad_outputs=u.to(logits.dtype), allow_unused=True)
    return torch.zeros_like(x) if hd is None else hd.detach()


KNN_MAX_WORK = 1e13  # multiply-adds of the brute-force distances (N^2 D) above which eps_knn is refused
_KNN_CACHE: "weakref.WeakKeyDictionary[Any, dict[int, torch.Tensor]]" = weakref.WeakKeyDictionary()


def knn_distances(data: Any, k: int, *, chunk: int = 512) -> torch.Tensor:
    """[N] the L2 distance from each image of ``data`` (an ``ArrayDataset``, pixels in [0, 1]) to its k-th
    nearest other image, by brute force in float32 chunks; cached per data set object and k."""
    cached = _KNN_CACHE.setdefault(data, {})
    if k in cached:
        return cached[k]
    n, pixels = len(data), math.prod(data.image_shape)
    work = float(n) * n * pixels
    if work > KNN_MAX_WORK:  # refused before the images are read (dSprites as float32 would be 12 GB)
        raise RecipeError(f"vat: eps_knn needs the distances between all {n:,} training images of {pixels:,} "
                          f"pixels ({work:.1e} multiply-adds, more than the {KNN_MAX_WORK:.0e} allowed); set "
                          f"objective.terms.vat.params.eps_knn = 0 for a fixed radius")
    if not 0 < k < n:
        raise RecipeError(f"vat: eps_knn = {k} needs a training set of more than {k} images; it has {n}")
    flat = data.get_batch(torch.arange(n)).x.reshape(n, -1).to("cpu", torch.float32)
    squares = flat.square().sum(1)
    out = torch.empty(n)
    with torch.no_grad(), torch.autocast("cpu", enabled=False):
        for a in range(0, n, chunk):
            b = min(a + chunk, n)
            d2 = squares[a:b, None] + squares[None, :] - 2.0 * (flat[a:b] @ flat.T)
            d2[torch.arange(b - a), torch.arange(a, b)] = math.inf  # not the image itself
            out[a:b] = d2.topk(k, dim=1, largest=False).values[:, -1].clamp_min(0.0).sqrt()
    cached[k] = out
    return out
