"""vaelib: autoencoders and variational autoencoders, the library behind the book.

One job per module, roughly from the foundations up (imports run one way:
``tests/test_import_graph.py`` finds no cycle, imports inside functions included):

* ``seeding`` (one seed for every source of randomness), ``threads`` (vaelib's own thread counts),
  ``_checks`` (argument checks), ``_io`` (files written atomically, read only when regular),
  ``limits`` (work and memory estimated before the work starts), ``warning_types`` (the categories
  of vaelib's warnings about a run, one per finding);
* ``data`` (data sets), ``readers`` (a user's own files, checked before anything is allocated), ``scaling`` (per-feature
  standardisation kept with the model, and when data needs it), ``nn`` (building blocks), ``models``
  (architectures, the ``ModelOutput`` protocol and the registry), ``losses`` (terms),
  ``objectives`` (what is minimised, each written once), ``probability`` (entropy, KL divergences,
  MLE/MAP regression, a closed-form latent-variable toy), ``pca`` (PCA and probabilistic PCA);
* ``checkpoint`` (training state in safetensors + JSON files, saved atomically, never unpickled);
* ``runs`` (the rules every training run obeys: history, divergence, optimisers, fingerprint,
  device, argument checks), ``train`` (``fit``: the loop), ``engine`` (``fit_batched``: many runs
  trained as one computation), ``pretrain`` (greedy layer-wise pre-training), ``wake_sleep`` (the
  wake-sleep algorithm, AEVB's rival in Kingma & Welling's experiments), ``adversarial`` (the
  adversarial autoencoder's regulariser), ``gradients`` (the score-function and reparameterised
  estimators of an encoder's gradient);
* ``estimators`` (log-likelihood estimates: IWAE, exact pPCA), ``monitoring`` (bounds measured
  after every epoch of ``fit_batched``), ``evaluation`` (held-out error,
  linear probes, novelty scores), ``diagnostics`` (what a finished run shows: posterior collapse, a
  multiplier at its clamp, a rising held-out loss), ``export`` (a model as ``torch.export`` programs
  that run without vaelib), ``metrics`` (sample quality: distance to a known surface,
  coverage, MMD, energy distance), ``claims`` (comparisons over seeds, in combined standard errors);
* ``experiments`` (one module per reproduced experiment), ``sweep`` (grids of experiments on a Dask
  cluster, resumable);
* ``tables`` (result tables for a terminal, README or page), ``plots`` (the book's figures),
  ``interactive`` (3-D figures a reader can turn), ``source`` (vaelib's own source on a page);
* ``cli`` (``python -m vaelib``: train, sample, encode, evaluate, export, reproduce, sweep).
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# The public names, each from the module that defines it. They are imported on first use (PEP 562):
# ``import vaelib`` itself imports neither torch nor any submodule, so that ``python -m vaelib
# --help`` starts at once; ``from vaelib import fit`` and ``vaelib.fit`` work as usual.
_PUBLIC = {
    "vaelib.models": ("AAE", "CVAE", "VAE", "Autoencoder", "ContractiveAutoencoder", "ConvAutoencoder",
                      "DenoisingAutoencoder", "SparseAutoencoder", "TiedAutoencoder", "append_labels", "load_model",
                      "register_model"),
    "vaelib.objectives": ("ELBO", "GECO", "ContractiveReconstruction", "KLConstrained", "KoLagrangian",
                          "Reconstruction", "SigmaVAE", "SparseReconstruction", "make_objective"),
    "vaelib.adversarial": ("AdversarialRegularizer",),
    "vaelib.pretrain": ("pretrain_layerwise",),
    "vaelib.seeding": ("seed_everything",),
    "vaelib.checkpoint": ("CheckpointError", "load_checkpoint", "save_checkpoint"),
    "vaelib.runs": ("History", "TrainingDiverged", "TrainingSettings"),
    "vaelib.train": ("fit",),
    "vaelib.scaling": ("Scaling",),
    "vaelib.diagnostics": ("diagnose",),
    "vaelib.engine": ("fit_batched",),
}
_HOME = {name: module for module, names in _PUBLIC.items() for name in names}

if TYPE_CHECKING:
    from vaelib.adversarial import AdversarialRegularizer
    from vaelib.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
    from vaelib.engine import fit_batched
    from vaelib.models import (AAE, CVAE, VAE, Autoencoder, ContractiveAutoencoder, ConvAutoencoder,
                               DenoisingAutoencoder, SparseAutoencoder, TiedAutoencoder, append_labels, load_model,
                               register_model)
    from vaelib.objectives import (ELBO, GECO, ContractiveReconstruction, KLConstrained, KoLagrangian, Reconstruction,
                                   SigmaVAE, SparseReconstruction, make_objective)
    from vaelib.pretrain import pretrain_layerwise
    from vaelib.runs import History, TrainingDiverged, TrainingSettings
    from vaelib.seeding import seed_everything
    from vaelib.diagnostics import diagnose
    from vaelib.scaling import Scaling
    from vaelib.train import fit


def __getattr__(name: str) -> Any:
    """A public name, imported from its module on first use; or a submodule (``vaelib.data``)."""
    if name in _HOME:
        value = getattr(importlib.import_module(_HOME[name]), name)
        globals()[name] = value
        return value
    try:
        return importlib.import_module(f"vaelib.{name}")
    except ModuleNotFoundError as missing:
        if missing.name != f"vaelib.{name}":
            raise
    raise AttributeError(f"module 'vaelib' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOME})


__version__ = "0.1.0"
__all__ = ["VAE", "Autoencoder", "ELBO", "GECO", "SigmaVAE", "make_objective", "KLConstrained", "KoLagrangian",
           "Reconstruction", "History", "TrainingDiverged", "TrainingSettings", "fit", "seed_everything",
           "ConvAutoencoder", "DenoisingAutoencoder", "SparseAutoencoder", "TiedAutoencoder",
           "SparseReconstruction", "pretrain_layerwise", "ContractiveAutoencoder", "ContractiveReconstruction",
           "CheckpointError", "load_checkpoint", "load_model", "register_model", "save_checkpoint", "fit_batched",
           "AAE", "CVAE", "AdversarialRegularizer", "append_labels", "Scaling", "diagnose"]
