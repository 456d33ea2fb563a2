"""vaelib chooses its own thread count for tiny networks and gives the caller's back (vaelib.threads)."""
import pytest
import torch

import vaelib
from vaelib import threads
from vaelib.data import cosine_surface
from vaelib.estimators import iwae_bound


@pytest.fixture
def callers_count():
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    yield 3
    torch.set_num_threads(before)
    threads.set_threads(None)


def _seen_inside(monkeypatch, module, name):
    """Record torch.get_num_threads() at the moment ``module.name`` is called."""
    seen = []
    original = getattr(module, name)

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, spy)
    return seen


def test_fit_runs_on_one_thread_and_restores_the_callers_count(callers_count, monkeypatch):
    from vaelib import train

    seen = _seen_inside(monkeypatch, train, "_run_epoch")
    vaelib.fit(vaelib.VAE(3), vaelib.ELBO(), cosine_surface(64, seed=0), epochs=1, batch_size=32, progress=False)
    assert seen == [1] and torch.get_num_threads() == callers_count


def test_fit_batched_and_the_estimators_restore_the_callers_count(callers_count):
    x = cosine_surface(64, seed=0)
    vaelib.fit_batched([vaelib.VAE(3)], [vaelib.ELBO()], x, seeds=[0], epochs=1, batch_size=32, progress=False)
    assert torch.get_num_threads() == callers_count
    iwae_bound(vaelib.VAE(3), x, k=4)
    assert torch.get_num_threads() == callers_count


def test_the_count_can_be_overridden(callers_count, monkeypatch):
    from vaelib import train

    seen = _seen_inside(monkeypatch, train, "_run_epoch")
    threads.set_threads(2)
    vaelib.fit(vaelib.VAE(3), vaelib.ELBO(), cosine_surface(64, seed=0), epochs=1, batch_size=32, progress=False)
    assert seen == [2] and threads.kernel_threads(runs=10) == 2
    threads.set_threads(None)
    monkeypatch.setenv(threads.ENVIRONMENT_VARIABLE, "2")
    assert threads.torch_threads() == 2
    monkeypatch.setenv(threads.ENVIRONMENT_VARIABLE, "many")
    with pytest.raises(ValueError, match="VAELIB_THREADS must be a positive integer, got 'many'"):
        threads.torch_threads()
    with pytest.raises(ValueError, match="threads must be a positive integer or None"):
        threads.set_threads(0)


def test_the_kernel_uses_at_most_one_thread_per_run_and_per_core(monkeypatch):
    monkeypatch.delenv(threads.ENVIRONMENT_VARIABLE, raising=False)
    assert threads.kernel_threads(runs=1) == 1
    assert threads.kernel_threads(runs=1000) == threads.cores()
