"""The batched engine: many independent trainings as one computation.

Why: Ko & Ko's Table 1 needs 20 trainings of a VAE with about 400 weights, and a comparison of
objectives needs a hundred. Trained one after the other by ``vaelib.fit``, every step is some sixty
tiny PyTorch operations whose fixed cost dwarfs their arithmetic. ``fit_batched`` trains R runs of
one architecture together, each with its own objective and seed.

Two paths compute the epochs, and both consume the objectives' one definition
(``vaelib.objectives``):

* the **generic path** (``_generic.py``): the runs' own model and objective modules with every
  tensor stacked along a run axis; any model whose ``forward`` returns a ``ModelOutput``, any
  batchable objective, any device. A model built from vaelib's blocks runs its own ``forward``
  once for all runs over stacked layers (``_stacked.py``) with ordinary autograd, and one flat
  optimiser updates every run (``_optimizer.py``); any other model is vectorised with
  ``torch.func`` (``vmap`` of ``functional_call`` and autograd);
* the **C kernel** (``kernel.c``, built once per machine): an accelerator for the common case, a
  ``vaelib.VAE`` MLP (a Gaussian or a Bernoulli decoder) on the CPU in float32 trained on objectives
  of the VAE family, which it reads as their ``Form`` (the family's formula with each objective's
  numbers; R as ``vaelib.objectives.reconstruction_term`` scores the decoder's output). tests/test_engine.py
  holds it to the generic path and to ``vaelib.fit``.

``backend="auto"`` takes the kernel where it covers the runs and the generic path otherwise; it
never fails for want of the kernel, and the result records which path trained and why the kernel
did not (``Histories.backend``, ``Histories.fallback_reason``).

The files, one concern each:

* ``_fit.py``: ``fit_batched`` itself, the epoch loop that drives a trainer;
* ``_trainer.py``: ``Trainer``, the protocol both trainers satisfy;
* ``_generic.py``: ``GenericTrainer``, the generic path;
* ``_stacked.py``: the stacked form of vaelib's layers, for the generic path;
* ``_optimizer.py``: Adam's and SGD's update over one flat buffer, for the generic path;
* ``_kernel.py``: ``KernelTrainer`` beside the kernel's loader and the call of one epoch;
* ``_layout.py``: how the kernel sees the runs (the flat buffer, the per-run settings) and the
  contract with ``kernel.c`` (settings, activations, limits), from which the C side is generated;
* ``_build.py``: compiling ``kernel.c`` once and caching it safely;
* ``_inputs.py``: each epoch's data order and random draws (a VAE's noise, a denoising model's
  corruption), drawn as ``vaelib.fit`` draws them;
* ``_state.py``: the training-state files (checks on reading, restoring a trainer).

The rules every run obeys, the engine's and ``vaelib.fit``'s alike (``History``, divergence, the
fingerprint, the argument checks), are in ``vaelib.runs``.

The runs stay independent: each run's gradient comes from its own loss, the optimiser acts
elementwise, and every run draws its data order and noise from generators of its own. They are
also ``vaelib.fit``'s numbers: run r starts from its model's weights and draws what
``fit(..., seed=seeds[r])`` draws (each epoch's order from ``torch.Generator().manual_seed(seed)``,
what the model draws in its forward pass from a generator seeded with ``seed``), in minibatches of the same
sizes, in the same order. Results agree with ``fit`` up to floating-point rounding (sums in matrix
products are added in another order; the kernel has its own exp and tanh, within 1 and 3 units in
the last place).

Like ``fit``, the engine checkpoints and resumes exactly: ``checkpoint=path`` keeps every run's state
in one training-state file (``vaelib.checkpoint.save_state``: the trainer's stacked tensors, the
optimiser's moments, GECO's averages, each run's data-order and noise generators, the histories and
the setup's fingerprint), and ``resume_from=path`` continues as if never stopped, bit for bit. The
generators are saved as they stand at the end of an epoch, although the next epoch's draws are
already being made in the background: each draw records the states it left behind.
"""
from __future__ import annotations

from vaelib.engine._build import KernelCacheWarning, KernelUnavailableWarning
from vaelib.engine._fit import Histories, RunDiverged, fit_batched, kernel_available, kernel_covers
from vaelib.engine._generic import GenericTrainer
from vaelib.engine._kernel import KernelTrainer
from vaelib.engine._layout import ADAM_BETAS
from vaelib.engine._state import STATE_CONTENT
from vaelib.engine._trainer import Trainer
from vaelib.runs import BACKENDS

__all__ = ["ADAM_BETAS", "BACKENDS", "STATE_CONTENT", "GenericTrainer", "Histories", "KernelCacheWarning",
           "KernelTrainer", "KernelUnavailableWarning", "RunDiverged", "Trainer", "fit_batched", "kernel_available",
           "kernel_covers"]
