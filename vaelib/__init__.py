"""vaelib: autoencoders and variational autoencoders, the library behind the book.

One job per module: ``data`` (data sets), ``nn`` (building blocks), ``models`` (architectures),
``losses`` (terms), ``objectives`` (what is minimised), ``train`` (the loop), ``plots`` (figures),
``pca`` (PCA and probabilistic PCA), ``estimators`` (log-likelihood estimates: IWAE, exact pPCA),
``evaluation`` (held-out error, linear probes, novelty scores), ``cli`` (``python -m vaelib``),
``probability`` (entropy, KL divergences, MLE/MAP regression, a closed-form latent-variable toy),
``checkpoint`` (training state in safetensors + JSON files, saved atomically, never unpickled),
``engine`` (many VAE runs trained as one computation: ``fit_batched``), ``wake_sleep`` (the
wake-sleep algorithm, AEVB's rival in Kingma & Welling's experiments), ``gradients`` (the
score-function and reparameterised estimators of an encoder's gradient).
"""
from vaelib.models import (AAE, CVAE, VAE, Autoencoder, ContractiveAutoencoder, ConvAutoencoder, DenoisingAutoencoder, SparseAutoencoder,
                           TiedAutoencoder, append_labels)
from vaelib.objectives import (ELBO, GECO, ContractiveReconstruction, KLConstrained, KoLagrangian,
                               Reconstruction, SigmaVAE, SparseReconstruction, make_objective)
from vaelib.adversarial import AdversarialRegularizer
from vaelib.pretrain import pretrain_layerwise
from vaelib.seeding import seed_everything
from vaelib.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from vaelib.models import load_model, register_model
from vaelib.train import History, TrainingDiverged, fit
from vaelib.engine import fit_batched

__version__ = "0.1.0"
__all__ = ["VAE", "Autoencoder", "ELBO", "GECO", "SigmaVAE", "make_objective", "KLConstrained", "KoLagrangian", "Reconstruction", "History", "TrainingDiverged", "fit",
           "seed_everything",
           "ConvAutoencoder", "DenoisingAutoencoder", "SparseAutoencoder", "TiedAutoencoder",
           "SparseReconstruction", "pretrain_layerwise", "ContractiveAutoencoder", "ContractiveReconstruction",
           "CheckpointError", "load_checkpoint", "load_model", "register_model", "save_checkpoint", "fit_batched",
           "AAE", "CVAE", "AdversarialRegularizer", "append_labels"]
