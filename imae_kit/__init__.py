"""imae-kit: Information Maximization Autoencoders composed from declarative recipes.

The public API: ``load_recipe``, ``train``, ``load_run``, ``evaluate`` (see ``imae_kit.api``), the
registration decorators, and ``Step`` with its parts for term authors.
"""

from typing import Any

from imae_kit.errors import ImaeKitError
from imae_kit.registry import register_dataset, register_metric, register_network, register_term
from imae_kit.step import Posterior, Samples, Step

__version__ = "0.1.0"

_API = ("Run", "evaluate", "load_recipe", "load_run", "train")

__all__ = [
    "ImaeKitError",
    "Posterior",
    "Run",
    "Samples",
    "Step",
    "evaluate",
    "load_recipe",
    "load_run",
    "register_dataset",
    "register_metric",
    "register_network",
    "register_term",
    "train",
    "__version__",
]


def __getattr__(name: str) -> Any:
    """The training API, imported on first use so that ``import imae_kit`` (plugins, the CLI) stays light."""
    if name in _API:
        from imae_kit import api  # lazy: it loads the trainer, the evaluation and matplotlib

        return getattr(api, name)
    raise AttributeError(f"module 'imae_kit' has no attribute {name!r}")
