"""Each epoch's inputs for ``fit_batched``: the minibatch sizes, every run's data order and random
draws, drawn as ``vaelib.fit`` draws them, one epoch ahead in a background thread."""
from __future__ import annotations

import inspect
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import torch
from torch import nn

# One random draw a model makes in its forward pass: the keyword of ``forward`` that takes it, its
# distribution ("normal": standard normal; "uniform": on [0, 1)) and its width per point.
Draw = tuple[str, str, int]
DISTRIBUTIONS = ("normal", "uniform")


def batch_sizes(n: int, batch_size: int) -> list[int]:
    """The minibatch sizes of one epoch, as ``randperm(n).split(batch_size)`` makes them."""
    return [batch_size] * (n // batch_size) + ([n % batch_size] if n % batch_size else [])


def random_draws(model: nn.Module) -> tuple[Draw, ...]:
    """What ``model``'s forward pass draws in training mode, in the order it draws them (see
    ``vaelib.models.base``): its ``random_draws()`` if it declares them, else the standard normal
    ``noise`` of width ``latent_dim`` of a forward that takes ``noise`` (a VAE's), else nothing."""
    declared = getattr(model, "random_draws", None)
    if callable(declared):
        draws = []
        for draw in declared():
            keyword, distribution, width = draw
            if not isinstance(keyword, str) or distribution not in DISTRIBUTIONS or not isinstance(width, int) \
                    or width < 1:
                raise ValueError(f"{type(model).__name__}.random_draws() gave {draw!r}; each draw is (keyword, one "
                                 f"of {list(DISTRIBUTIONS)}, width >= 1)")
            draws.append((keyword, cast(str, distribution), width))
        return tuple(draws)
    if "noise" in inspect.signature(model.forward).parameters:
        return (("noise", "normal", int(getattr(model, "latent_dim", 0))),)
    return ()


class EpochInputs:
    """Each epoch's data order (runs, n) and random draws (per ``Draw``, (runs, n, width)), drawn as
    ``vaelib.fit`` draws them: ``randperm(n)`` from ``Generator().manual_seed(seed)``, then per
    minibatch of b points the model's draws in their order (``randn(b, width)`` or
    ``rand(b, width)``) from a generator seeded with ``seed``, which is what the model draws from
    PyTorch's global generator when ``fit`` seeds it with ``seed``.

    The draws do not depend on the training, so the next epoch's are made in a background thread
    while the current one trains (PyTorch releases the GIL in both), into the other of two buffers.
    They are drawn with ``normal_`` and ``uniform_`` into views of a buffer, one per minibatch: the
    same numbers as ``randn`` and ``rand`` (which are those on a new tensor) at half the cost per call.

    For checkpoints, each draw also returns the generators' states it leaves (those at the end of
    its epoch: what a resumed run starts from), and ``start`` holds them as given: seeded, or
    ``states`` after ``done`` epochs of a resumed run.
    """

    def __init__(self, seeds: list[int], n: int, sizes: list[int], draws: tuple[Draw, ...], dtype: torch.dtype,
                 device: torch.device, epochs: int, done: int = 0,
                 states: dict[str, list[torch.Tensor]] | None = None):
        self.order_rngs = [torch.Generator().manual_seed(seed) for seed in seeds]
        self.noise_rngs = [torch.Generator(device=device).manual_seed(seed) for seed in seeds]
        for kind, rngs in (("order", self.order_rngs), ("noise", self.noise_rngs)):
            for rng, state in zip(rngs, states[kind] if states is not None else ()):
                rng.set_state(state)
        self.orders = [torch.empty(len(seeds), n, dtype=torch.int64) for _ in range(2)]
        self.draws = draws
        self.buffers = [{keyword: torch.empty(len(seeds), n, width, dtype=dtype, device=device)
                         for keyword, _, width in draws} for _ in range(2)]
        # per buffer and run, per minibatch: the views its draws go into, in the model's order
        self.minibatches = [[list(zip(*(buffer[keyword][r].split(sizes) for keyword, _, _ in draws)))
                             for r in range(len(seeds))] for buffer in self.buffers]
        self.device, self.drawn, self.epochs = device, done, epochs
        self.start = self._states()
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vaelib-engine-draws")
        self.pending = self.pool.submit(self._draw, done % 2) if done < epochs else None

    def _states(self) -> dict[str, list[torch.Tensor]]:
        return {"order": [rng.get_state() for rng in self.order_rngs],
                "noise": [rng.get_state() for rng in self.noise_rngs]}

    def _draw(self, buffer: int) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, list[torch.Tensor]]]:
        order = self.orders[buffer]
        distributions = [distribution for _, distribution, _ in self.draws]
        for r, (order_rng, noise_rng) in enumerate(zip(self.order_rngs, self.noise_rngs)):
            torch.randperm(order.shape[1], generator=order_rng, out=order[r])
            for minibatch in self.minibatches[buffer][r]:
                for view, distribution in zip(minibatch, distributions):
                    if distribution == "normal":
                        view.normal_(generator=noise_rng)
                    else:
                        view.uniform_(generator=noise_rng)
        return order.to(self.device), self.buffers[buffer], self._states()

    def next(self) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, list[torch.Tensor]]]:
        """The next epoch's order and draws (by keyword), and the generators' states after drawing them."""
        assert self.pending is not None, "next() after the last epoch"
        ready = self.pending.result()
        self.drawn += 1
        self.pending = self.pool.submit(self._draw, self.drawn % 2) if self.drawn < self.epochs else None
        return ready

    def __enter__(self) -> EpochInputs:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
