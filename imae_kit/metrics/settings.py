"""The evaluation settings: a recipe's [eval] table, validated here so the recipe layer needs no evaluation code."""

from __future__ import annotations

import attrs

from imae_kit.params import bool_field, choice_field, float_field, int_field


@attrs.frozen
class EvalSettings:
    """What the evaluation computes and how hard it tries: a recipe's [eval] table (benchmarks/mig_speed.py
    times the full-grid dSprites MIG)."""

    batch_size: int = int_field(500, min=1, doc="images per encoder/decoder batch")
    seed: int = int_field(0, min=0, doc="seed of every random draw of the evaluation")
    max_points: int = int_field(0, min=0, doc="evaluate on a random subset of this many test points (0: all)")
    entropy_samples: int = int_field(
        10000, min=1, doc="Monte-Carlo samples for H(z_k), H(z), I(x;z_k) and the total correlation")
    mixture_size: int = int_field(
        10000, min=0, doc="evaluation points in the aggregate-posterior mixture (0: all; else a random subset)")
    mig: bool = bool_field(True, doc="compute the MIGs when the data set has ground-truth factors")
    mig_split: str = choice_field("train", ("train", "test"),
                                  doc="split the MIG is computed over (dSprites: train is the full grid)")
    mig_max_points: int = int_field(0, min=0, doc="points of the MIG split used (0: all, as Chen et al.)")
    mig_samples: int = int_field(10000, min=1, doc="samples of q(z|x) for the MIG entropies (Chen et al.: 10,000)")
    mixture_kernel: str = choice_field("auto", ("auto", "eager", "compiled"),
                                      doc="mixture kernel: eager torch, torch.compile'd, or auto (compile if large)")
    histogram_bins: int = int_field(20, min=2, doc="bins of the histogram MIG (disentanglement_lib: 20)")
    chunk_elements: int = int_field(1 << 21, min=4096,
                                    doc="floats per work buffer of the mixture kernels (memory bound)")
    prior_scale: float = float_field(1.0, min=0.0, min_exclusive=True,
                                     doc="scale s of the N(0, s^2) prior in the reported KL(p(z|x)||r(z))")
    figures: bool = bool_field(True, doc="draw figures/*.png")
    traversal_steps: int = int_field(11, min=2, doc="values of each z_k in a traversal row")
    traversal_span: float = float_field(2.0, min=0.0, min_exclusive=True, doc="traversals sweep [-span, span]")
    traversal_dims: int = int_field(10, min=1, doc="most informative dimensions shown in the traversals")
    reconstruction_images: int = int_field(32, min=1, doc="images in the reconstruction figure")
