"""imae-kit: Information Maximization Autoencoders composed from declarative recipes."""

from imae_kit.errors import ImaeKitError
from imae_kit.registry import register_dataset, register_network, register_term
from imae_kit.step import Posterior, Samples, Step

__version__ = "0.1.0"

__all__ = [
    "ImaeKitError",
    "Posterior",
    "Samples",
    "Step",
    "register_dataset",
    "register_network",
    "register_term",
    "__version__",
]
