"""vaelib: autoencoders and variational autoencoders, the library behind the book.

One job per module, roughly from the foundations up (imports run one way:
``tests/test_import_graph.py`` finds no cycle, imports inside functions included):

* ``seeding`` (one seed for every source of randomness), ``threads`` (vaelib's own thread counts),
  ``_checks`` (argument checks), ``_io`` (files written atomically, read only when regular),
  ``limits`` (work and memory estimated before the work starts);
* ``data`` (data sets), ``readers`` (a user's own files, checked before anything is allocated), ``nn`` (building blocks), ``models``
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
* ``estimators`` (log-likelihood estimates: IWAE, exact pPCA), ``evaluation`` (held-out error,
  linear probes, novelty scores), ``metrics`` (sample quality: distance to a known surface,
  coverage, MMD, energy distance), ``claims`` (comparisons over seeds, in combined standard errors);
* ``experiments`` (one module per reproduced experiment), ``sweep`` (grids of experiments on a Dask
  cluster, resumable);
* ``tables`` (result tables for a terminal, README or page), ``plots`` (the book's figures),
  ``interactive`` (3-D figures a reader can turn), ``source`` (vaelib's own source on a page);
* ``cli`` (``python -m vaelib``: train, sample, evaluate, reproduce, sweep).
"""
from vaelib.models import (AAE, CVAE, VAE, Autoencoder, ContractiveAutoencoder, ConvAutoencoder, DenoisingAutoencoder,
                           SparseAutoencoder, TiedAutoencoder, append_labels)
from vaelib.objectives import (ELBO, GECO, ContractiveReconstruction, KLConstrained, KoLagrangian,
                               Reconstruction, SigmaVAE, SparseReconstruction, make_objective)
from vaelib.adversarial import AdversarialRegularizer
from vaelib.pretrain import pretrain_layerwise
from vaelib.seeding import seed_everything
from vaelib.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from vaelib.models import load_model, register_model
from vaelib.runs import History, TrainingDiverged, TrainingSettings
from vaelib.train import fit
from vaelib.engine import fit_batched

__version__ = "0.1.0"
__all__ = ["VAE", "Autoencoder", "ELBO", "GECO", "SigmaVAE", "make_objective", "KLConstrained", "KoLagrangian",
           "Reconstruction", "History", "TrainingDiverged", "TrainingSettings", "fit", "seed_everything",
           "ConvAutoencoder", "DenoisingAutoencoder", "SparseAutoencoder", "TiedAutoencoder",
           "SparseReconstruction", "pretrain_layerwise", "ContractiveAutoencoder", "ContractiveReconstruction",
           "CheckpointError", "load_checkpoint", "load_model", "register_model", "save_checkpoint", "fit_batched",
           "AAE", "CVAE", "AdversarialRegularizer", "append_labels"]
