"""The model returns pyro distributions: the encoder's Posterior, the relaxed one-hot y, the Bernoulli decoder."""

from __future__ import annotations

import math

import pyro.distributions as dist
import pytest
import torch

from imae_kit.distributions import RelaxedOneHot
from imae_kit.step import Posterior

from helpers import tiny_model


@pytest.fixture
def model_and_x():
    model = tiny_model(data_dim=16, k1=3, k2=4)
    x = (torch.rand(6, 16, generator=torch.Generator().manual_seed(1)) < 0.5).float()
    return model, x


def test_encoder_returns_pyro_normal_and_categorical_with_the_right_shapes(model_and_x):
    model, x = model_and_x
    post = model.encode(x)
    assert isinstance(post.z, dist.Independent) and isinstance(post.z.base_dist, dist.Normal)
    assert post.z.batch_shape == (6,) and post.z.event_shape == (3,)
    assert isinstance(post.y, dist.Categorical)
    assert post.y.batch_shape == (6,) and post.y.param_shape == (6, 4)
    assert torch.equal(post.z.base_dist.loc, post.mu) and torch.equal(post.z.base_dist.scale, post.sigma)
    # the logits are normalised log-probabilities, so they agree with the distribution's own
    assert torch.allclose(post.logits.logsumexp(-1), torch.zeros(6), atol=1e-6)
    assert torch.allclose(post.y.logits, post.logits, atol=1e-6)
    assert torch.allclose(post.probs.sum(-1), torch.ones(6), atol=1e-6)
    # log-density of z under pyro's distribution is the sum of the K1 Gaussian log-densities, by hand
    z = torch.randn(6, 3)
    by_hand = (-0.5 * ((z - post.mu) / post.sigma) ** 2 - post.sigma.log() - 0.5 * math.log(2 * math.pi)).sum(-1)
    assert torch.allclose(post.z.log_prob(z), by_hand, atol=1e-5)


def test_posterior_distributions_are_built_once_and_only_when_read(model_and_x):
    model, x = model_and_x
    post = model.encode(x)
    assert post._distributions == {}  # VAT's extra encodes read only the logits and never build them
    z, y = post.z, post.y
    assert post.z is z and post.y is y
    given_z = dist.Normal(torch.zeros(2, 3), torch.ones(2, 3)).to_event(1)
    given_y = dist.Categorical(logits=torch.zeros(2, 4))
    kept = Posterior.from_distributions(given_z, given_y)
    assert kept.z is given_z and kept.y is given_y
    assert torch.equal(kept.mu, torch.zeros(2, 3)) and torch.allclose(kept.logits, torch.full((2, 4), -math.log(4)))


def test_relaxed_one_hot_y_and_reparameterised_z_carry_gradients(model_and_x):
    model, x = model_and_x
    post = model.encode(x)
    samples = model.sample_latents(post)
    assert samples.z.shape == (6, 3) and samples.y.shape == (6, 4)
    assert torch.allclose(samples.y.sum(-1), torch.ones(6), atol=1e-5) and bool((samples.y >= 0).all())
    (samples.y[:, 0].sum() + samples.z.sum()).backward()
    head = model.encoder.head.weight.grad
    assert head is not None and bool(head[:3].abs().sum() > 0) and bool(head[6:].abs().sum() > 0)


def test_low_temperature_relaxed_y_approaches_a_one_hot_draw_from_p_y_given_x():
    """As the temperature goes to 0 the Gumbel-softmax sample becomes one-hot and its argmax is
    distributed as p(y|x) (the Gumbel-max trick): check the frequencies on one fixed row."""
    model = tiny_model(data_dim=4, k1=1, k2=3, temperature=0.01)
    logits = torch.log(torch.tensor([[0.6, 0.3, 0.1]])).expand(20000, 3)
    post = Posterior(mu=torch.zeros(20000, 1), sigma=torch.ones(20000, 1), logits=logits)
    torch.manual_seed(0)
    y = model.sample_latents(post).y
    assert float(y.max(-1).values.mean()) > 0.99
    freq = torch.bincount(y.argmax(-1), minlength=3).float() / 20000
    assert torch.allclose(freq, torch.tensor([0.6, 0.3, 0.1]), atol=0.015)  # 3 standard errors ~ 0.01


def test_decoder_returns_a_bernoulli_over_pixels_from_logits(model_and_x):
    model, x = model_and_x
    post = model.encode(x)
    s = model.sample_latents(post)
    lik = model.decode(s.y, s.z)
    assert isinstance(lik, dist.Independent) and isinstance(lik.base_dist, dist.Bernoulli)
    assert lik.batch_shape == (6,) and lik.event_shape == (16,)
    p = lik.base_dist.probs
    by_hand = (x * p.log() + (1 - x) * (1 - p).log()).sum(-1)
    assert torch.allclose(lik.log_prob(x), by_hand, atol=1e-4)


def test_relaxed_one_hot_matches_pyros_relaxed_categorical_in_density_and_draws():
    """imae_kit's RelaxedOneHot against pyro.distributions.RelaxedOneHotCategorical (an independent
    implementation, a transformed ExpRelaxedCategorical): the same log-density, and the same draw
    from the same generator state."""
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(5, 4, generator=g, dtype=torch.float64) * 2
    for t in (0.3, 0.67, 2.0):
        ours = RelaxedOneHot(t, logits)
        theirs = dist.RelaxedOneHotCategorical(torch.tensor(t, dtype=torch.float64), logits=logits)
        torch.manual_seed(11)
        y = ours.rsample((3,))
        torch.manual_seed(11)
        y_pyro = theirs.rsample((3,))
        assert y.shape == (3, 5, 4)
        assert torch.allclose(y, y_pyro, atol=1e-12)
        assert torch.allclose(ours.log_prob(y), theirs.log_prob(y), atol=1e-9)
        # unnormalised logits give the same distribution
        assert torch.allclose(RelaxedOneHot(t, logits + 7.0).log_prob(y), ours.log_prob(y), atol=1e-9)
    assert RelaxedOneHot(0.5, logits[0]).expand((6,)).batch_shape == (6,)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        RelaxedOneHot(0.0, logits)


def test_relaxed_one_hot_density_integrates_to_one_for_two_categories():
    """K = 2: y = (s, 1 - s), density over s in (0, 1); a midpoint rule over s gives 1."""
    d = RelaxedOneHot(0.8, torch.log(torch.tensor([0.3, 0.7], dtype=torch.float64)))
    s = (torch.arange(200000, dtype=torch.float64) + 0.5) / 200000
    density = d.log_prob(torch.stack([s, 1 - s], dim=-1)).exp()
    assert float(density.mean()) == pytest.approx(1.0, abs=1e-3)
