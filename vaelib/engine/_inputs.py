"""Each epoch's inputs for ``fit_batched``: the minibatch sizes, every run's data order and noise,
drawn as ``vaelib.fit`` draws them, one epoch ahead in a background thread."""
from __future__ import annotations

import inspect
from concurrent.futures import ThreadPoolExecutor

import torch
from torch import nn


def batch_sizes(n: int, batch_size: int) -> list[int]:
    """The minibatch sizes of one epoch, as ``randperm(n).split(batch_size)`` makes them."""
    return [batch_size] * (n // batch_size) + ([n % batch_size] if n % batch_size else [])


def noise_width(model: nn.Module) -> int:
    """The width of the standard normal noise a model's forward takes (0: it takes none)."""
    return int(getattr(model, "latent_dim", 0)) if "noise" in inspect.signature(model.forward).parameters else 0


class EpochInputs:
    """Each epoch's data order (runs, n) and noise (runs, n, noise_dim), drawn as ``vaelib.fit``
    draws them: ``randperm(n)`` from ``Generator().manual_seed(seed)``, then one
    ``randn(b, noise_dim)`` per minibatch of b points from a generator seeded with ``seed``.

    The draws do not depend on the training, so the next epoch's are made in a background thread
    while the current one trains (PyTorch releases the GIL in both), into the other of two buffers.
    The noise is drawn with ``normal_`` into views of a buffer, one per minibatch: the same numbers
    as ``randn`` (which is ``normal_`` on a new tensor) at half the cost per call.

    For checkpoints, each draw also returns the generators' states it leaves (those at the end of
    its epoch: what a resumed run starts from), and ``start`` holds them as given: seeded, or
    ``states`` after ``done`` epochs of a resumed run.
    """

    def __init__(self, seeds: list[int], n: int, sizes: list[int], noise_dim: int, dtype: torch.dtype,
                 device: torch.device, epochs: int, done: int = 0, states: dict | None = None):
        self.order_rngs = [torch.Generator().manual_seed(seed) for seed in seeds]
        self.noise_rngs = [torch.Generator(device=device).manual_seed(seed) for seed in seeds]
        for kind, rngs in (("order", self.order_rngs), ("noise", self.noise_rngs)):
            for rng, state in zip(rngs, states[kind] if states is not None else ()):
                rng.set_state(state)
        self.orders = [torch.empty(len(seeds), n, dtype=torch.int64) for _ in range(2)]
        self.noises = [torch.empty(len(seeds), n, noise_dim, dtype=dtype, device=device) for _ in range(2)]
        self.minibatches = [[list(run.split(sizes)) for run in noise] for noise in self.noises]
        self.device, self.drawn, self.epochs, self.noise_dim = device, done, epochs, noise_dim
        self.start = self._states()
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vaelib-engine-draws")
        self.pending = self.pool.submit(self._draw, done % 2) if done < epochs else None

    def _states(self) -> dict[str, list[torch.Tensor]]:
        return {"order": [rng.get_state() for rng in self.order_rngs],
                "noise": [rng.get_state() for rng in self.noise_rngs]}

    def _draw(self, buffer: int) -> tuple[torch.Tensor, torch.Tensor, dict]:
        order, noise = self.orders[buffer], self.noises[buffer]
        for r, (order_rng, noise_rng) in enumerate(zip(self.order_rngs, self.noise_rngs)):
            torch.randperm(order.shape[1], generator=order_rng, out=order[r])
            if self.noise_dim:
                for minibatch in self.minibatches[buffer][r]:
                    minibatch.normal_(generator=noise_rng)
        return order.to(self.device), noise, self._states()

    def next(self) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """The next epoch's order and noise, and the generators' states after drawing them."""
        assert self.pending is not None, "next() after the last epoch"
        ready = self.pending.result()
        self.drawn += 1
        self.pending = self.pool.submit(self._draw, self.drawn % 2) if self.drawn < self.epochs else None
        return ready

    def __enter__(self) -> EpochInputs:
        return self

    def __exit__(self, *exc) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
