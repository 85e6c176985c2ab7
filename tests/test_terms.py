"""Each built-in term against an independent computation, its gradients, and its parameter checks."""

from __future__ import annotations

import math

import attrs
import pytest
import torch
import torch.nn.functional as F

from helpers import make_step, posterior_step, tiny_model
from imae_kit import estimators as est
from imae_kit.errors import RecipeError
from imae_kit.registry import build, get
from imae_kit.terms.information import module_behind, running_statistics_frozen

D64 = torch.float64

EXPECTED_SENSE = {
    "reconstruction": "maximize", "discrete_mi": "maximize", "vat": "minimize", "marginal_kl": "minimize",
    "total_correlation": "minimize", "posterior_kl": "minimize", "aggregate_kl": "minimize", "capacity_kl": "minimize",
}


def term(name: str, **params):
    return build("term", name, params)


@pytest.fixture
def model_step():
    torch.manual_seed(0)
    model = tiny_model(data_dim=16, k1=3, k2=4, batch_norm=True).train()
    x = torch.rand(32, 16)
    return model, make_step(model, x, dataset_size=500, step=0)


# --------------------------------------------------------------------------- common contract

@pytest.mark.parametrize("name", sorted(EXPECTED_SENSE))
def test_each_term_declares_its_sense_cites_the_paper_and_returns_a_finite_scalar(name, model_step):
    cls = get("term", name)
    assert cls.sense == EXPECTED_SENSE[name]
    assert "PAPER.md" in cls.__doc__.splitlines()[0]
    value = term(name)(model_step[1])
    assert value.dim() == 0 and torch.isfinite(value)


@pytest.mark.parametrize("name", sorted(EXPECTED_SENSE))
def test_gradients_reach_the_encoder(name, model_step):
    model, step = model_step
    model.zero_grad()
    term(name)(step).backward()
    head = model.encoder.head.weight.grad
    body = model.encoder.body[0].weight.grad
    assert head is not None and body is not None
    assert torch.isfinite(head).all() and head.abs().sum() > 0 and body.abs().sum() > 0
    k1 = model.latent_continuous
    rows = {"discrete_mi": slice(2 * k1, None), "vat": slice(2 * k1, None), "marginal_kl": slice(0, 2 * k1),
            "total_correlation": slice(0, 2 * k1)}
    if name in rows:  # the term reaches the head outputs it is about
        assert head[rows[name]].abs().sum() > 0
    if name == "reconstruction":
        assert model.decoder.head.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name, params, match", [
    ("vat", {"eps": -1.0}, "'eps' must be > 0"),
    ("vat", {"power_iterations": "two"}, "expected an integer"),
    ("marginal_kl", {"estimator": "kde"}, "must be one of"),
    ("marginal_kl", {"scale": 0}, "'scale' must be > 0"),
    ("capacity_kl", {"capacity_steps": 0}, "'capacity_steps' must be >= 1"),
    ("posterior_kl", {"latent": 1}, "must be a string"),
    ("total_correlation", {"estimatr": "mss"}, "did you mean 'estimator'"),
])
def test_bad_params_raise_recipe_errors(name, params, match):
    with pytest.raises(RecipeError, match=match):
        build("term", name, params, where="recipe.toml, objective.terms[0]")


# --------------------------------------------------------------------------- reconstruction

def test_reconstruction_is_the_bernoulli_log_likelihood(model_step):
    _, step = model_step
    logits = step.likelihood.base_dist.logits
    by_hand = -F.binary_cross_entropy_with_logits(logits, step.x, reduction="none").sum(dim=1).mean()
    assert term("reconstruction")(step).item() == pytest.approx(by_hand.item(), rel=1e-6)


# --------------------------------------------------------------------------- discrete_mi

def test_discrete_mi_is_log_k_for_confident_balanced_and_zero_for_identical_rows():
    k = 4
    mu, sigma = torch.zeros(8, 2, dtype=D64), torch.ones(8, 2, dtype=D64)
    confident = posterior_step(mu, sigma, logits=50.0 * torch.eye(k, dtype=D64).repeat(2, 1))
    assert term("discrete_mi")(confident).item() == pytest.approx(math.log(k), abs=1e-9)
    same = posterior_step(mu, sigma, logits=torch.tensor([[1.0, -2.0, 0.5, 0.0]], dtype=D64).expand(8, k))
    assert term("discrete_mi")(same).item() == pytest.approx(0.0, abs=1e-12)


def test_discrete_mi_uses_the_global_batch():
    """With a gather that appends a second process's batch, the value is that of the concatenation."""
    g = torch.Generator().manual_seed(1)
    here = torch.randn(6, 3, generator=g, dtype=D64)
    there = torch.log_softmax(torch.randn(10, 3, generator=g, dtype=D64), dim=-1)
    step = posterior_step(torch.zeros(6, 2, dtype=D64), torch.ones(6, 2, dtype=D64), logits=here)
    step = attrs.evolve(step, gather=lambda t: torch.cat([t, there]))
    expected = est.discrete_mutual_information(torch.cat([torch.log_softmax(here, -1), there]))
    assert term("discrete_mi")(step).item() == pytest.approx(expected.item(), abs=1e-12)


@pytest.mark.parametrize("c", [0.0, 0.25, 1.0, 2.0])
def test_discrete_mi_conditional_weight_matches_entropies_summed_by_hand(c):
    """H(Y) - c H(Y|X) against plain loops over the batch's probabilities (c = 1 is I(x;y))."""
    g = torch.Generator().manual_seed(3)
    logits = torch.log_softmax(torch.randn(7, 3, generator=g, dtype=D64), dim=-1)
    p = logits.exp().tolist()
    marginal = [sum(row[k] for row in p) / len(p) for k in range(3)]
    h_y = -sum(m * math.log(m) for m in marginal)
    h_y_given_x = sum(-sum(q * math.log(q) for q in row) for row in p) / len(p)
    step = posterior_step(torch.zeros(7, 2, dtype=D64), torch.ones(7, 2, dtype=D64), logits=logits)
    value = term("discrete_mi", conditional_weight=c)(step).item()
    assert value == pytest.approx(h_y - c * h_y_given_x, abs=1e-12)


def test_discrete_mi_conditional_weight_refuses_a_negative_value():
    with pytest.raises(RecipeError, match="conditional_weight"):
        term("discrete_mi", conditional_weight=-0.5)


# --------------------------------------------------------------------------- vat

def _kl_at(model, x, target, r):
    return est.categorical_kl(target, model.encode(x + r).logits).mean().item()


def test_vat_perturbation_has_norm_eps_and_beats_random_directions():
    torch.manual_seed(2)
    model = tiny_model(data_dim=16, k2=4, hidden=(32,), seed=2).eval()
    x = torch.rand(64, 16)
    target = model.encode(x).logits.detach()
    vat = term("vat", eps=0.5)
    r_adv = vat.adversarial_perturbation(model.encode, x, target)
    assert torch.allclose(r_adv.norm(dim=1), torch.full((64,), 0.5), rtol=1e-5)
    with torch.no_grad():
        adversarial = _kl_at(model, x, target, r_adv)
        randoms = []
        for _ in range(10):
            r = torch.randn_like(x)
            randoms.append(_kl_at(model, x, target, 0.5 * r / r.norm(dim=1, keepdim=True)))
    assert adversarial > max(randoms)
    assert adversarial > 3 * sum(randoms) / len(randoms)


def test_vat_examples_without_a_usable_gradient_keep_their_direction_and_norm_eps():
    """Example 0's p(y|x) ignores its input (zero gradient), example 1's gradient is NaN: both keep
    the random starting direction at norm eps; example 2 follows its gradient."""
    w = torch.randn(16, 4, generator=torch.Generator().manual_seed(0), dtype=D64)

    class Encoded:
        def __init__(self, logits):
            self.logits = torch.log_softmax(logits, dim=-1)

    def encode(v):
        logits = v @ w
        rows = [logits[:1] * 0, logits[1:2] + (v[1:2].sum() * float("nan") if v.requires_grad else 0), logits[2:]]
        return Encoded(torch.cat(rows))

    x = torch.rand(3, 16, generator=torch.Generator().manual_seed(1), dtype=D64)
    target = encode(x).logits.detach()
    torch.manual_seed(6)
    start = torch.randn(3, 16, dtype=D64)
    torch.manual_seed(6)
    r = term("vat", eps=0.7, xi=1e-3).adversarial_perturbation(encode, x, target)
    assert torch.allclose(r.norm(dim=1), torch.full((3,), 0.7, dtype=D64))
    assert torch.allclose(r[:2], 0.7 * start[:2] / start[:2].norm(dim=1, keepdim=True))
    assert not torch.allclose(r[2], 0.7 * start[2] / start[2].norm())


def test_vat_value_is_the_kl_at_the_adversarial_point_and_the_target_is_detached(model_step):
    model, step = model_step
    model.eval()  # fixed normalisation, so the two calls below see the same network
    step = make_step(model, step.x)
    vat = term("vat")
    torch.manual_seed(3)
    value = vat(step)
    torch.manual_seed(3)
    r = vat.adversarial_perturbation(model.encode, step.x, step.posterior.logits.detach())
    ref = torch.distributions.kl_divergence(torch.distributions.Categorical(logits=step.posterior.logits),
                                            torch.distributions.Categorical(logits=model.encode(step.x + r).logits))
    assert value.item() == pytest.approx(ref.mean().item(), rel=1e-5)
    (grad,) = torch.autograd.grad(value, step.posterior.logits, allow_unused=True)
    assert grad is None  # no gradient through the target p(y|x)


def test_vat_power_method_finds_the_top_eigenvector():
    """Many power iterations align r_adv with the top eigenvector of the Hessian of the KL at r = 0,
    J^T (diag p - p p^T) J with J the Jacobian of the logits, computed exactly here (float64, where the
    finite difference at xi = 1e-6 is far above rounding; in float32 it is not, see the term's doc)."""
    model = tiny_model(data_dim=12, k2=4, hidden=(16,), seed=1).to(D64).eval()
    x = torch.rand(1, 12, dtype=D64, generator=torch.Generator().manual_seed(4))
    jac = torch.autograd.functional.jacobian(lambda v: model.encode(v.unsqueeze(0)).logits[0], x[0])
    p = model.encode(x).probs[0].detach()
    hessian = jac.T @ (torch.diag(p) - torch.outer(p, p)) @ jac
    top = torch.linalg.eigh(hessian).eigenvectors[:, -1]
    torch.manual_seed(5)
    r = term("vat", power_iterations=20).adversarial_perturbation(model.encode, x, model.encode(x).logits.detach())[0]
    assert abs(torch.dot(r, top).item()) / r.norm().item() > 0.999


def _hessian_products(model, x, d):
    """Per example, H d with H = J^T (diag p - p p^T) J built from the full Jacobian (float64, eval mode)."""
    rows = []
    for xi, di in zip(x, d):
        jac = torch.autograd.functional.jacobian(lambda v: model.encode(v.unsqueeze(0)).logits[0], xi)
        p = model.encode(xi.unsqueeze(0)).probs[0].detach()
        rows.append(jac.T @ ((torch.diag(p) - torch.outer(p, p)) @ (jac @ di)))
    return torch.stack(rows)


def test_vat_exact_product_is_the_hessian_vector_product_of_the_kl():
    """hessian_vector_product against H d from the full Jacobian, and against a central finite difference of
    the KL's gradient at +-h d in float64 (where h = 1e-5 is far above rounding)."""
    from imae_kit.terms.information import hessian_vector_product
    model = tiny_model(data_dim=12, k2=4, hidden=(16,), seed=1).to(D64).eval()
    g = torch.Generator().manual_seed(4)
    x, d = torch.rand(5, 12, dtype=D64, generator=g), torch.randn(5, 12, dtype=D64, generator=g)
    got = hessian_vector_product(model.encode, x, d)
    want = _hessian_products(model, x, d)
    assert torch.allclose(got, want, rtol=1e-10, atol=1e-12)
    target = model.encode(x).logits.detach()

    def kl_grad(r):
        r = r.clone().requires_grad_(True)
        return torch.autograd.grad(est.categorical_kl(target, model.encode(x + r).logits).sum(), r)[0]

    h = 1e-5
    central = (kl_grad(h * d) - kl_grad(-h * d)) / (2 * h)
    assert torch.allclose(got, central, rtol=1e-5, atol=1e-9)


def test_vat_exact_product_prints_no_torch_jit_deprecation_notice():
    """The first forward-mode pass of a process makes torch load its jvp decompositions through torch.jit.script,
    which warns (FutureWarning) in torch 2.14: the exact product silences that one notice, and nothing else.
    Run in a fresh interpreter, where the decompositions are not loaded yet, with every warning an error."""
    import subprocess
    import sys
    code = (
        "import warnings; warnings.simplefilter('error')\n"
        "import torch\n"
        "from imae_kit.terms.information import hessian_vector_product\n"
        "enc = torch.nn.Sequential(torch.nn.Linear(6, 4))\n"
        "class E(torch.nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__(); self.net = enc\n"
        "    def forward(self, x):\n"
        "        class P: pass\n"
        "        p = P(); p.logits = torch.log_softmax(self.net(x), -1); return p\n"
        "x = torch.rand(3, 6)\n"
        "hd = hessian_vector_product(E(), x, torch.randn(3, 6))\n"
        "assert hd.shape == x.shape and bool(torch.isfinite(hd).all())\n"
        "with warnings.catch_warnings(record=True) as seen:\n"
        "    warnings.simplefilter('always')\n"
        "    from imae_kit.terms.information import quiet_jit_script_notice\n"
        "    with quiet_jit_script_notice():\n"
        "        warnings.warn('another notice', FutureWarning)\n"
        "assert [str(w.message) for w in seen] == ['another notice'], seen\n"
        "print('ok')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_vat_exact_and_finite_difference_find_the_same_direction_where_the_difference_is_accurate():
    """In float64 Miyato et al.'s finite difference (xi = 1e-6) is accurate: both methods give one r_adv."""
    model = tiny_model(data_dim=16, k2=4, hidden=(32,), seed=2).to(D64).eval()
    x = torch.rand(64, 16, dtype=D64, generator=torch.Generator().manual_seed(3))
    target = model.encode(x).logits.detach()
    rs = []
    for hvp in ("exact", "finite_difference"):
        torch.manual_seed(8)
        rs.append(term("vat", hvp=hvp, power_iterations=2).adversarial_perturbation(model.encode, x, target))
    assert torch.allclose(rs[0], rs[1], atol=1e-6)


def test_vat_finite_difference_in_float32_is_at_rounding_level_and_the_exact_product_is_not():
    """Why ``hvp = "exact"`` is the default: on binary images in float32, grad_r KL at r = 1e-6 d is mostly
    rounding, so its direction barely agrees with the true H d (float64); the exact product agrees to 1e-4."""
    from imae_kit.terms.information import hessian_vector_product
    model = tiny_model(data_dim=256, k2=3, hidden=(64, 64), seed=5).eval()
    g = torch.Generator().manual_seed(6)
    x = (torch.rand(32, 256, generator=g) < 0.2).float()
    d = torch.randn(32, 256, generator=g)
    d = d / d.norm(dim=1, keepdim=True)
    truth = hessian_vector_product(model.to(D64).encode, x.to(D64), d.to(D64))
    model.float()
    target = model.encode(x).logits.detach()
    probe = (1e-6 * d).requires_grad_(True)
    fd = torch.autograd.grad(est.categorical_kl(target, model.encode(x + probe).logits).sum(), probe)[0]
    exact = hessian_vector_product(model.encode, x, d)
    cos = lambda a: F.cosine_similarity(a.to(D64), truth, dim=1)  # noqa: E731
    assert cos(exact).min() > 0.9999
    assert cos(fd).median() < 0.9, float(cos(fd).median())


def test_vat_exact_product_refuses_an_encoder_forward_mode_cannot_run_through():
    """A plugin encoder with a custom autograd Function that has no jvp: a RecipeError naming the way out."""

    class Square(torch.autograd.Function):
        @staticmethod
        def forward(ctx, v):
            ctx.save_for_backward(v)
            return v * v

        @staticmethod
        def backward(ctx, grad):
            (v,) = ctx.saved_tensors
            return 2 * v * grad

    class Encoded:
        def __init__(self, logits):
            self.logits = torch.log_softmax(logits, dim=-1)

    w = torch.randn(8, 3, generator=torch.Generator().manual_seed(0))
    x = torch.rand(4, 8)
    encode = lambda v: Encoded(Square.apply(v) @ w)  # noqa: E731
    with pytest.raises(RecipeError, match="finite_difference"):
        term("vat").adversarial_perturbation(encode, x, encode(x).logits.detach())
    r = term("vat", hvp="finite_difference").adversarial_perturbation(encode, x, encode(x).logits.detach())
    assert torch.allclose(r.norm(dim=1), torch.ones(4))


def test_vat_hvp_refuses_an_unknown_method():
    with pytest.raises(RecipeError, match="finite_difference"):
        term("vat", hvp="exakt")


def _images(n: int = 40, side: int = 4, seed: int = 0):
    from imae_kit.data.base import TensorImages
    g = torch.Generator().manual_seed(seed)
    return TensorImages(images=torch.rand(n, side, side, generator=g), labels=torch.zeros(n, dtype=torch.long),
                        num_classes=1)


def test_knn_distances_are_the_kth_nearest_other_image_by_brute_force():
    from imae_kit.terms.information import knn_distances
    data = _images()
    flat = data.images.reshape(40, -1).to(D64)
    want = []
    for i in range(40):
        others = sorted(float((flat[i] - flat[j]).norm()) for j in range(40) if j != i)
        want.append(others[2])  # the 3rd nearest
    got = knn_distances(data, 3)
    assert torch.allclose(got.to(D64), torch.tensor(want, dtype=D64), rtol=1e-5)
    assert knn_distances(data, 3) is got  # computed once per data set


def test_vat_eps_knn_perturbs_each_example_by_eps_times_its_knn_distance():
    """The value is the KL at x + eps * dist_k(x) * d, d the power method's unit direction (same random draw)."""
    from imae_kit.terms.information import knn_distances
    data = _images(n=40, side=4)
    model = tiny_model(data_dim=16, k2=4, hidden=(32,), seed=2).eval()
    index = torch.tensor([3, 17, 5, 0, 39, 21])
    x = data.get_batch(index).x.reshape(6, -1)
    step = attrs.evolve(make_step(model, x), index=index, data=data)
    vat = term("vat", eps=0.25, eps_knn=2)
    torch.manual_seed(4)
    value = vat(step)
    torch.manual_seed(4)
    unit = term("vat", eps=1.0).adversarial_perturbation(model.encode, x, step.posterior.logits.detach())
    radius = 0.25 * knn_distances(data, 2)[index]
    assert torch.allclose((radius[:, None] * unit).norm(dim=1), radius)
    want = est.categorical_kl(step.posterior.logits.detach(), model.encode(x + radius[:, None] * unit).logits).mean()
    assert value.item() == pytest.approx(want.item(), rel=1e-5)


def test_vat_eps_knn_refuses_a_step_without_its_rows_and_a_data_set_too_large():
    from imae_kit.terms import information
    model = tiny_model(data_dim=16, k2=4, hidden=(8,), seed=0).eval()
    x = torch.rand(4, 16)
    with pytest.raises(RecipeError, match="eps_knn = 0"):
        term("vat", eps_knn=3)(make_step(model, x))
    data = _images(n=40, side=4)
    step = attrs.evolve(make_step(model, data.get_batch(torch.arange(4)).x.reshape(4, -1)), index=torch.arange(4),
                        data=data)
    old = information.KNN_MAX_WORK
    information.KNN_MAX_WORK = 100.0
    try:
        with pytest.raises(RecipeError, match="40 training images of 16 pixels"):
            term("vat", eps_knn=3)(step)
    finally:
        information.KNN_MAX_WORK = old
    with pytest.raises(RecipeError, match="more than 40 images"):
        term("vat", eps_knn=40)(step)


def test_vat_leaves_batchnorm_running_statistics_alone(model_step):
    model, step = model_step
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert bns
    before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "num_batches" in k}
    loss = term("reconstruction")(step) - term("vat", power_iterations=2)(step)
    after = {k: v for k, v in model.state_dict().items() if k in before}
    for k in before:
        assert torch.equal(before[k], after[k]), k
    assert all(m.track_running_stats for m in bns)
    loss.backward()  # the main backward pass still works after VAT's extra passes
    # control: the same extra pass without the guard does move the statistics
    model.encode(step.x + 1.0)
    assert not torch.equal(before["encoder.body.1.running_mean"], model.state_dict()["encoder.body.1.running_mean"])


def test_module_behind_finds_the_model_and_the_guard_restores_flags_on_error():
    model = tiny_model(batch_norm=True).train()
    assert module_behind(model.encode) is model
    assert module_behind(model.encoder) is model.encoder
    assert module_behind(lambda x: model.encode(x)) is None
    with pytest.raises(RuntimeError):
        with running_statistics_frozen(model):
            assert not model.encoder.body[1].track_running_stats
            raise RuntimeError("boom")
    assert model.encoder.body[1].track_running_stats


def test_vat_warns_when_it_cannot_find_the_module(model_step):
    model, step = model_step
    step = attrs.evolve(step, encode=lambda x: model.encode(x))
    with pytest.warns(UserWarning, match="BatchNorm"):
        term("vat")(step)


# --------------------------------------------------------------------------- marginal_kl, total_correlation

def _gaussian_step(b=400, k=3, s=0.5, dataset_size=1000, seed=6):
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(b, k, generator=g, dtype=D64) * math.sqrt(1 - s * s)
    sigma = torch.full((b, k), s, dtype=D64)
    z = mu + sigma * torch.randn(b, k, generator=g, dtype=D64)
    return posterior_step(mu, sigma, z=z, dataset_size=dataset_size)


def test_marginal_kl_of_a_standard_normal_aggregate_is_near_zero():
    """Aggregate exactly N(0, I); measured bias + noise at B = 400 is below 0.03 for K = 3."""
    assert abs(term("marginal_kl")(_gaussian_step()).item()) < 0.05
    assert term("marginal_kl", scale=3.0)(_gaussian_step()).item() == pytest.approx(3 * 0.5 * (1 / 9 - 1 + math.log(9)), abs=0.1)


@pytest.mark.parametrize("estimator", ["batch", "mws", "mss"])
def test_gaussian_terms_pass_the_estimator_and_dataset_size(estimator):
    step = _gaussian_step(b=20, dataset_size=700)
    z, mu, sigma = step.samples.z, step.posterior.mu, step.posterior.sigma
    tc = term("total_correlation", estimator=estimator)(step)
    assert tc.item() == pytest.approx(est.total_correlation(z, mu, sigma, estimator, 700).item(), abs=1e-12)
    kl = term("marginal_kl", estimator=estimator, scale=2.0)(step)
    assert kl.item() == pytest.approx(est.marginal_kl_to_normal(z, mu, sigma, 2.0, estimator, 700).item(), abs=1e-12)
    if estimator == "mws":
        batch_tc = term("total_correlation")(step).item()
        assert tc.item() == pytest.approx(batch_tc + 2 * math.log(700), abs=1e-9)


def test_terms_on_one_step_share_the_aggregate_densities(monkeypatch):
    """marginal_kl, total_correlation and aggregate_kl with one estimator build log p(z_ik) and log p(z_i)
    once per step (Step.shared); another estimator gets its own; values are unchanged by the sharing."""
    calls = {"marginals": 0, "joint": 0}
    real_marginals, real_joint = est.log_aggregate_marginals, est.log_aggregate_density

    def counting(kind, real):
        def wrapped(*args, **kwargs):
            calls[kind] += 1
            return real(*args, **kwargs)
        return wrapped

    # the aggregate computes log p(z_ik) and log p(z_i) without the [B, B, K] matrix: count those two
    monkeypatch.setattr(est, "log_marginal_aggregates", counting("marginals", est.log_marginal_aggregates))
    monkeypatch.setattr(est, "log_joint_aggregate", counting("joint", est.log_joint_aggregate))
    step = _gaussian_step(b=25, dataset_size=500)
    z, mu, sigma = step.samples.z, step.posterior.mu, step.posterior.sigma
    values = [term("marginal_kl")(step), term("total_correlation")(step), term("aggregate_kl", latent="z")(step)]
    assert calls == {"marginals": 1, "joint": 1}
    term("total_correlation", estimator="mss")(step)
    assert calls == {"marginals": 2, "joint": 2}
    log_r = -0.5 * z ** 2 - 0.5 * math.log(2 * math.pi)
    log_q = real_marginals(est.log_density_matrix(z, mu, sigma))
    log_p = real_joint(est.log_density_matrix(z, mu, sigma))
    assert values[0].item() == pytest.approx((log_q - log_r).sum(1).mean().item(), abs=1e-12)
    assert values[1].item() == pytest.approx((log_p - log_q.sum(1)).mean().item(), abs=1e-12)
    assert values[2].item() == pytest.approx((log_p - log_r.sum(1)).mean().item(), abs=1e-12)


# --------------------------------------------------------------------------- posterior_kl

def test_posterior_kl_matches_torch_kl_divergence_and_the_closed_form():
    g = torch.Generator().manual_seed(7)
    mu = torch.randn(5, 3, generator=g, dtype=D64)
    sigma = 0.2 + torch.rand(5, 3, generator=g, dtype=D64)
    logits = torch.randn(5, 4, generator=g, dtype=D64)
    step = posterior_step(mu, sigma, logits=logits)
    tdist = torch.distributions
    kl_z = tdist.kl_divergence(tdist.Normal(mu, sigma), tdist.Normal(0.0, 1.0)).sum(-1).mean()
    by_hand_z = (0.5 * (mu ** 2 + sigma ** 2 - 1) - sigma.log()).sum(-1).mean()
    kl_y = tdist.kl_divergence(tdist.Categorical(logits=logits), tdist.Categorical(logits=torch.zeros(4, dtype=D64))).mean()
    assert kl_z.item() == pytest.approx(by_hand_z.item(), abs=1e-12)
    assert term("posterior_kl", latent="z")(step).item() == pytest.approx(kl_z.item(), abs=1e-12)
    assert term("posterior_kl", latent="y")(step).item() == pytest.approx(kl_y.item(), abs=1e-12)
    assert term("posterior_kl")(step).item() == pytest.approx((kl_z + kl_y).item(), abs=1e-12)


# --------------------------------------------------------------------------- aggregate_kl

def test_aggregate_kl_y_part_is_the_closed_form_on_the_batch():
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.5, 0.25, 0.25], [0.2, 0.6, 0.2]], dtype=D64)
    step = posterior_step(torch.zeros(4, 2, dtype=D64), torch.ones(4, 2, dtype=D64), logits=probs.log())
    mean = [sum(row[y] for row in probs.tolist()) / 4 for y in range(3)]
    closed = sum(m * math.log(m / (1 / 3)) for m in mean)
    assert term("aggregate_kl", latent="y")(step).item() == pytest.approx(closed, abs=1e-12)
    balanced = posterior_step(torch.zeros(3, 2, dtype=D64), torch.ones(3, 2, dtype=D64),
                              logits=40.0 * torch.eye(3, dtype=D64))
    assert term("aggregate_kl", latent="y")(balanced).item() == pytest.approx(0.0, abs=1e-9)


def test_aggregate_kl_z_part_and_both():
    step = _gaussian_step(b=30, dataset_size=300)
    z, mu, sigma = step.samples.z, step.posterior.mu, step.posterior.sigma
    z_part = term("aggregate_kl", latent="z", estimator="mss")(step)
    assert z_part.item() == pytest.approx(est.aggregate_kl_to_normal(z, mu, sigma, 1.0, "mss", 300).item(), abs=1e-12)
    both = term("aggregate_kl")(step).item()
    assert both == pytest.approx(term("aggregate_kl", latent="z")(step).item()
                                 + term("aggregate_kl", latent="y")(step).item(), abs=1e-12)


# --------------------------------------------------------------------------- capacity_kl

def test_capacity_schedule_at_start_middle_end_and_after():
    cap = term("capacity_kl")  # JointVAE MNIST defaults: 0 -> 5 nats over 25,000 steps, C_y <= log K2
    assert cap.capacities(0, 10) == (0.0, 0.0)
    c_z, c_y = cap.capacities(12500, 10)
    assert c_z == pytest.approx(2.5) and c_y == pytest.approx(math.log(10))  # 2.5 > log 10 = 2.30
    assert cap.capacities(25000, 10) == pytest.approx((5.0, math.log(10)))
    assert cap.capacities(10 ** 6, 10) == pytest.approx((5.0, math.log(10)))
    custom = term("capacity_kl", z_capacity_start=1.0, z_capacity_end=25.0, y_capacity_end=0.8, capacity_steps=100)
    assert custom.capacities(50, 3) == pytest.approx((13.0, 0.4))
    assert custom.capacities(100, 3) == pytest.approx((25.0, 0.8))


def test_capacity_kl_value_is_the_distance_of_the_posterior_kls_to_the_capacities():
    g = torch.Generator().manual_seed(8)
    mu = 2 * torch.randn(6, 3, generator=g, dtype=D64)
    logits = 3 * torch.randn(6, 4, generator=g, dtype=D64)
    cap = term("capacity_kl", capacity_steps=100)
    for t in (0, 30, 100):
        step = posterior_step(mu, torch.full_like(mu, 0.5), logits=logits, step=t)
        c_z, c_y = cap.capacities(t, 4)
        kl_z = term("posterior_kl", latent="z")(step).item()
        kl_y = term("posterior_kl", latent="y")(step).item()
        assert cap(step).item() == pytest.approx(abs(kl_z - c_z) + abs(kl_y - c_y), abs=1e-12)
        assert term("capacity_kl", latent="z", capacity_steps=100)(step).item() == pytest.approx(abs(kl_z - c_z), abs=1e-12)
