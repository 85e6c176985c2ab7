"""The built-in objective terms, grouped by family; importing this package registers them all.

Each term reads a Step and returns its natural quantity in nats (per example, batch mean); its
class attribute ``sense`` says whether the objective maximises or minimises it (PAPER.md eq. 10 and
"The baselines").
"""

from imae_kit.terms import aggregate_posterior, baselines, information, reconstruction

__all__ = ["aggregate_posterior", "baselines", "information", "reconstruction"]
