"""vaelib: autoencoders and variational autoencoders, the library behind the book.

One job per module: ``data`` (data sets), ``nn`` (building blocks), ``models`` (architectures),
``losses`` (terms), ``objectives`` (what is minimised), ``train`` (the loop), ``plots`` (figures).
"""
from vaelib.models import VAE, Autoencoder
from vaelib.objectives import ELBO, KoLagrangian, Reconstruction
from vaelib.seeding import seed_everything
from vaelib.train import History, TrainingDiverged, fit

__version__ = "0.1.0"
__all__ = ["VAE", "Autoencoder", "ELBO", "KoLagrangian", "Reconstruction", "History", "TrainingDiverged", "fit",
           "seed_everything"]
