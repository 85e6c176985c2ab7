"""The evaluation metrics, each a registered plugin with a typed result (``base``); importing this package
registers the built-in ones, as imae-kit's own entry point ``imae_kit.metrics`` does.

- the paper's measurements (``measures``): accuracy, discrete, continuous, total_correlation, reconstruction;
- the MIG of Chen et al. and disentanglement_lib (``mig_metric`` over ``mig``);
- the field's other disentanglement scores: factor_vae (``factor_vae``), dci (``dci``), sap (``sap``),
  modularity (``modularity``: modularity and explicitness).
"""

from imae_kit.metrics import dci, factor_vae, measures, mig_metric, modularity, sap
from imae_kit.metrics.base import FigureRequest, MetricContext, MetricResult

__all__ = ["FigureRequest", "MetricContext", "MetricResult", "dci", "factor_vae", "measures", "mig_metric",
           "modularity", "sap"]
