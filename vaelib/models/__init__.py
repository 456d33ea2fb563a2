"""Architectures only: they know shapes, not what is minimised (see ``vaelib.objectives``).

``base`` holds the contract every model and objective relies on (``ModelOutput``) and the public
registry that makes a model checkpointable (``register_model``, ``load_model``), a user's own too.
"""
from vaelib.models.aae import AAE
from vaelib.models.autoencoder import Autoencoder
from vaelib.models.base import ModelOutput, build_model, load_model, register_model, registered_models
from vaelib.models.contractive import ContractiveAutoencoder
from vaelib.models.conv import ConvAutoencoder
from vaelib.models.cvae import CVAE, append_labels
from vaelib.models.denoising import DenoisingAutoencoder
from vaelib.models.sparse import SparseAutoencoder
from vaelib.models.tied import TiedAutoencoder
from vaelib.models.vae import VAE

__all__ = ["AAE", "Autoencoder", "CVAE", "ContractiveAutoencoder", "ConvAutoencoder", "DenoisingAutoencoder",
           "ModelOutput",
           "SparseAutoencoder", "TiedAutoencoder", "VAE", "append_labels", "build_model", "load_model",
           "register_model", "registered_models"]
