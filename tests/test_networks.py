"""Network bodies that know shapes: the conv pair (64x64, 28x28 and others), the MLP on flat vectors, the model
that reshapes between them, gradients through every layer, and a conv recipe that trains."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.autograd import forward_ad

from imae_kit.errors import RecipeError
from imae_kit.model import build_model
from imae_kit.networks import MLP, BatchNorm1d, Conv, Linear, outer_padding
from imae_kit.objective import Objective
from imae_kit.recipe import load_recipe

from conftest import RECIPES
from helpers import make_step

CONV_RECIPES = sorted((RECIPES / "conv").glob("*_dsprites.toml"))


def _model(shape, encoder="conv", decoder="conv", k1=4, k2=3, **conv):
    recipe = load_recipe(RECIPES / "conv" / "imae_dsprites.toml", overrides=[
        f"model.latent_continuous={k1}", f"model.latent_discrete={k2}",
        f'model.encoder={{ body = "{encoder}" }}', f'model.decoder={{ body = "{decoder}" }}',
        *[f"model.{part}.{k}={v}" for part in ("encoder", "decoder") for k, v in conv.items()]])
    torch.manual_seed(0)
    return build_model(recipe.model, shape)


def test_outer_padding_halves_64_and_28_exactly_and_refuses_an_odd_side():
    assert outer_padding(64, 4) == 1 and outer_padding(28, 4) == 3 and outer_padding(32, 4) == 1
    for side in (64, 28, 32, 12):
        p = outer_padding(side, 4)
        first = (side + 2 * p - 4) // 2 + 1          # Conv2d's output size, by the formula
        assert first == side // 2 + p - 1 and first % 8 == 0
        assert (first - 1) * 2 - 2 * p + 4 == side   # ConvTranspose2d's output size gives the side back
    with pytest.raises(ValueError, match="halves evenly"):
        outer_padding(27, 4)


@pytest.mark.parametrize("shape, grid", [((1, 64, 64), 4), ((1, 28, 28), 2), ((3, 28, 28), 2)])
def test_conv_encoder_and_decoder_shapes(shape, grid):
    """Encoder: four stride-2 convolutions 32-32-64-64 down to a grid x grid map, Linear 256; decoder: Linear
    256, Linear 64 x grid x grid, four transposed convolutions 64-32-32-C back to the image, no final Linear."""
    enc, enc_out = Conv().build(shape)
    convs = [m for m in enc if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 32, 64, 64] and convs[0].in_channels == shape[0]
    assert all(c.kernel_size == (4, 4) and c.stride == (2, 2) for c in convs)
    x = torch.rand(5, *shape)
    h = x
    for m in enc:
        h = m(h)
        if isinstance(m, nn.Conv2d) and m is convs[-1]:
            assert h.shape == (5, 64, grid, grid)
    assert enc_out == (256,) and h.shape == (5, 256)

    dec, dec_out = Conv().build((7,), target_shape=shape)
    deconvs = [m for m in dec if isinstance(m, nn.ConvTranspose2d)]
    assert [d.out_channels for d in deconvs] == [64, 32, 32, shape[0]]
    linears = [m for m in dec if isinstance(m, nn.Linear)]
    assert [lin.out_features for lin in linears] == [256, 64 * grid * grid]
    assert dec_out == shape and dec(torch.randn(5, 7)).shape == (5, *shape)


@pytest.mark.parametrize("shape", [(1, 64, 64), (1, 28, 28), (3, 12, 12)])
def test_conv_model_takes_and_returns_flat_batches(shape):
    """The Step's x stays [B, D]: the model reshapes it for the conv encoder and flattens the decoder's image
    logits into the Bernoulli over D pixels (whose head is then the identity)."""
    d = math.prod(shape)
    model = _model(shape)
    x = (torch.rand(6, d, generator=torch.Generator().manual_seed(1)) < 0.3).float()
    post = model.encode(x)
    assert post.mu.shape == (6, 4) and post.sigma.shape == (6, 4) and post.logits.shape == (6, 3)
    samples = model.sample_latents(post)
    likelihood = model.decode(samples.y, samples.z)
    assert likelihood.base_dist.logits.shape == (6, d) and likelihood.event_shape == (d,)
    assert likelihood.log_prob(x).shape == (6,)
    assert isinstance(model.decoder.head, nn.Identity) and isinstance(model.encoder.body[0], nn.Unflatten)
    assert model.reconstruct(x).shape == (6, d)
    # the flat batch is the image batch in (C, H, W) order: the encoder body sees exactly x.reshape(B, C, H, W)
    seen = []
    model.encoder.body[1].register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    model.encode(x)
    assert torch.equal(seen[0], x.reshape(6, *shape))


def test_mlp_bodies_stay_as_they_were():
    """The MLP works on flat vectors: built for (D,) it is the same Sequential (same state-dict keys), and the
    old int form still returns an int; the model keeps its final Linear."""
    body, out = MLP(hidden=(8, 5), batch_norm=True).build((12,))
    assert out == (5,) and isinstance(body, nn.Sequential) and body[0].in_features == 12
    assert MLP(hidden=(8,)).build(12)[1] == 8
    model = _model((1, 4, 4), encoder="mlp", decoder="mlp")
    keys = set(model.state_dict())
    assert {"encoder.body.0.weight", "encoder.head.weight", "decoder.body.0.weight", "decoder.head.weight"} <= keys
    assert model.decoder.head.out_features == 16
    assert model.decode(torch.eye(3)[:2], torch.zeros(2, 4)).base_dist.logits.shape == (2, 16)


def test_conv_encoder_with_mlp_decoder_and_back():
    for enc, dec in (("conv", "mlp"), ("mlp", "conv")):
        model = _model((1, 28, 28), encoder=enc, decoder=dec)
        x = torch.rand(3, 784)
        post = model.encode(x)
        assert model.decode(torch.eye(3), post.mu).base_dist.logits.shape == (3, 784)


def test_gradients_reach_every_conv_parameter_through_the_imae_objective():
    recipe = load_recipe(RECIPES / "conv" / "imae_dsprites.toml",
                         overrides=["model.latent_continuous=4", "model.encoder.image_size=28",
                                    "model.decoder.image_size=28"])
    torch.manual_seed(0)
    model = build_model(recipe.model, (1, 28, 28))
    x = (torch.rand(8, 784, generator=torch.Generator().manual_seed(2)) < 0.3).float()
    out = Objective.from_spec(recipe.objective)(make_step(model, x, dataset_size=100), log=True)
    out.loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and bool(torch.isfinite(p.grad).all()), name
        assert float(p.grad.abs().sum()) > 0, f"no gradient reaches {name}"


def test_a_conv_body_refuses_images_it_cannot_serve_naming_the_section():
    with pytest.raises(RecipeError, match=r"\[model.encoder\] body 'conv' is set for 64x64 images"):
        _model((1, 28, 28), image_size=64)
    with pytest.raises(RecipeError, match=r"\[model.encoder\] body 'conv' .*square"):
        _model((1, 28, 30))
    with pytest.raises(RecipeError, match=r"\[model.decoder\] body 'conv' .*halves evenly"):
        _model((1, 27, 27), encoder="mlp")


def test_a_conv_recipe_trains_a_few_steps_on_small_data(tmp_path, one_thread):
    """recipes/conv/imae_dsprites.toml as it is (64x64 conv pair, its objective) on 24 small 64x64 images read
    through the arrays data set: the loss is finite, the weights move, and the checkpoint reloads."""
    from imae_kit import load_run, train

    rng = np.random.default_rng(0)
    images = np.zeros((24, 64, 64), np.uint8)
    for i in range(24):
        r, c = rng.integers(0, 48, 2)
        images[i, r:r + 16, c:c + 16] = 255
    np.savez(tmp_path / "squares.npz", images=images)
    recipe = load_recipe(RECIPES / "conv" / "imae_dsprites.toml", steps=3, overrides=[
        f'data={{ name = "arrays", path = "{tmp_path / "squares.npz"}", test_fraction = 0.25 }}',
        "train.batch_size=6", "train.log_every=1", 'train.precision="fp32"'])
    torch.manual_seed(0)
    before = {k: v.clone() for k, v in build_model(recipe.model, (1, 64, 64)).state_dict().items()}
    run = train(recipe, out=str(tmp_path / "run"), evaluate=False)
    assert run.status["status"] == "completed" and len(run.metrics) == 3
    assert all(math.isfinite(m["loss"]) for m in run.metrics)
    after = load_run(tmp_path / "run").model.state_dict()
    assert set(after) == set(before)
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("encoder.body.1.0"))


# --------------------------------------------------------------------------- forward mode (VAT's exact product)

def _forward_mode(layer, x, t):
    with forward_ad.dual_level():
        return forward_ad.unpack_dual(layer(forward_ad.make_dual(x, t)))


def test_linear_forward_mode_gives_torchs_value_and_tangent_with_two_matrix_products():
    """networks.Linear under a dual input: the same value and tangent as nn.Linear, but no third product
    against the weight's zero tangent (counted with FlopCounterMode: 2 x 2 B I O FLOPs, not 3)."""
    from torch.utils.flop_counter import FlopCounterMode
    torch.manual_seed(0)
    ours = Linear(64, 32)
    theirs = torch.nn.Linear(64, 32)
    theirs.load_state_dict(ours.state_dict())
    x, t = torch.randn(8, 64, dtype=torch.float64), torch.randn(8, 64, dtype=torch.float64)
    ours.double(), theirs.double()
    counted = []
    for layer in (ours, theirs):
        with FlopCounterMode(display=False) as counter:
            value, tangent = _forward_mode(layer, x, t)
        counted.append(counter.get_total_flops())
        assert torch.allclose(value, x @ layer.weight.T + layer.bias) and torch.allclose(tangent, t @ layer.weight.T)
    assert counted == [2 * 2 * 8 * 64 * 32, 3 * 2 * 8 * 64 * 32]
    assert torch.equal(ours(x), theirs(x)) and forward_ad.unpack_dual(ours(x)).tangent is None


def test_batch_norm_runs_forward_mode_under_bf16_autocast_as_torchs_does_not():
    """networks.BatchNorm1d normalises a bf16 input in fp32: the same values as PyTorch's mixed-dtype
    kernel, and a tangent in the value's dtype, so the next bf16 Linear accepts the pair."""
    torch.manual_seed(1)
    ours, theirs = BatchNorm1d(16), torch.nn.BatchNorm1d(16)
    x = (3 * torch.randn(32, 16) + 1).bfloat16()
    assert torch.equal(ours(x), theirs(x))
    after = torch.nn.Linear(16, 4).bfloat16()
    t = torch.randn(32, 16).bfloat16()
    value, tangent = _forward_mode(lambda v: after(ours(v)), x, t)
    assert value.dtype == tangent.dtype == torch.bfloat16
    with pytest.raises(RuntimeError, match="dtype"):  # the control: PyTorch's own layer hands on an fp32 tangent
        _forward_mode(lambda v: after(theirs(v)), x, t)


# --------------------------------------------------------------------------- y's initial logits

def _mnist_model(*overrides):
    recipe = load_recipe(RECIPES / "imae_mnist.toml", overrides=['train.precision="fp32"', *overrides])
    torch.manual_seed(0)
    return build_model(recipe.model, (1, 28, 28))


def test_logits_init_scale_starts_y_uniform_and_leaves_z_and_the_decoder_as_they_were():
    """model.logits_init_scale = 1e-4 (IMSAT's initialisation): the logits' rows of the encoder head are the
    default ones times 1e-4, so log p(y|x) = -log K to within 1e-3 for any image; every other parameter is the
    default initialisation, drawn from the same random stream."""
    default, small = _mnist_model(), _mnist_model("model.logits_init_scale=1e-4")
    k1 = default.latent_continuous
    d, s = default.state_dict(), small.state_dict()
    for name in d:
        if name in ("encoder.head.weight", "encoder.head.bias"):
            assert torch.equal(s[name][:2 * k1], d[name][:2 * k1])
            torch.testing.assert_close(s[name][2 * k1:], d[name][2 * k1:] * 1e-4, rtol=1e-6, atol=0)
        else:
            assert torch.equal(s[name], d[name]), name
    x = torch.rand(64, 784)
    default.eval(), small.eval()
    uniform = -math.log(default.latent_discrete)
    assert (small.encode(x).logits - uniform).abs().max() < 1e-3
    assert (default.encode(x).logits - uniform).abs().max() > 1e-2   # the default scale does move them
    with pytest.raises(RecipeError, match="logits_init_scale"):
        _mnist_model("model.logits_init_scale=0")


def test_mlp_weight_scale_draws_hidden_weights_at_s_over_root_fan_in_with_zero_biases():
    """model.encoder.weight_scale = s: each hidden Linear's weights have standard deviation s / sqrt(fan_in)
    (checked against the closed form on 784 x 500 and 500 x 1000 draws) and zero biases; the heads keep
    PyTorch's initialisation; weight_scale = 0 (the default) is PyTorch's initialisation, bit for bit."""
    default = _mnist_model()
    scaled = _mnist_model("model.encoder.weight_scale=0.1")
    linears = [m for m in scaled.encoder.body if isinstance(m, nn.Linear)]
    assert [tuple(m.weight.shape) for m in linears] == [(500, 784), (1000, 500)]
    for m in linears:
        expected = 0.1 / math.sqrt(m.weight.shape[1])
        assert abs(m.weight.std().item() / expected - 1) < 0.01 and abs(m.weight.mean().item()) < 0.01 * expected
        assert torch.count_nonzero(m.bias) == 0
    default_linears = [m for m in default.encoder.body if isinstance(m, nn.Linear)]
    assert default_linears[0].weight.std().item() > 3 * linears[0].weight.std().item()
    assert scaled.encoder.head.weight.std().item() > 3 * 0.1 / math.sqrt(1000)
    again = _mnist_model("model.encoder.weight_scale=0")
    assert all(torch.equal(a, b) for a, b in zip(default.state_dict().values(), again.state_dict().values()))
    with pytest.raises(RecipeError, match="weight_scale"):
        _mnist_model("model.encoder.weight_scale=-1")
