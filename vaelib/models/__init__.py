"""Architectures only: they know shapes, not what is minimised (see ``vaelib.objectives``)."""
from vaelib.models.autoencoder import Autoencoder, ModelOutput
from vaelib.models.vae import VAE

__all__ = ["Autoencoder", "ModelOutput", "VAE"]
