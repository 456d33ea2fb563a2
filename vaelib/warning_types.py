"""The warnings vaelib gives about a run's data and results, one category per finding, so that a
user can filter each (``warnings.filterwarnings("ignore", category=PosteriorCollapseWarning)``) or
all of them (``VaelibWarning``). ``vaelib.scaling`` and ``vaelib.diagnostics`` issue them;
``python -m vaelib train`` prints each as one line."""
from __future__ import annotations


class VaelibWarning(UserWarning):
    """Base of vaelib's warnings about a run's data or results."""


class DataScaleWarning(VaelibWarning):
    """The data's scale makes the training defaults unsuitable: standardise it (``vaelib.Scaling``)."""


class PosteriorCollapseWarning(VaelibWarning):
    """Latent dimensions carry no information: their KL from the prior is below a threshold."""


class MultiplierAtClampWarning(VaelibWarning):
    """A constrained objective's multiplier ended at its limit: the constraint cannot be met, or
    does not bind (GECO's kappa, the KL bound's delta)."""


class HeldoutRisingWarning(VaelibWarning):
    """The held-out loss rose after its best epoch: the model overfits the training rows."""
