"""Architectures only: they know shapes, not what is minimised (see ``vaelib.objectives``)."""
from vaelib.models.autoencoder import Autoencoder, ModelOutput
from vaelib.models.conv import ConvAutoencoder
from vaelib.models.denoising import DenoisingAutoencoder
from vaelib.models.sparse import SparseAutoencoder
from vaelib.models.tied import TiedAutoencoder
from vaelib.models.vae import VAE

__all__ = ["Autoencoder", "ConvAutoencoder", "DenoisingAutoencoder", "ModelOutput", "SparseAutoencoder",
           "TiedAutoencoder", "VAE"]
