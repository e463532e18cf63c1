"""Fixtures for the dlkernels.debug tests (torch models, hook-state snapshots)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")


@pytest.fixture(autouse=True)
def _seeded():
    """Every test starts from the same torch RNG state, and leaves it as it found it."""
    with torch.random.fork_rng():
        torch.manual_seed(1234)
        yield


# Every hook dict a module, parameter or optimizer has: the profiler must leave
# each of them exactly as it found it.
MODULE_HOOK_DICTS = (
    "_forward_pre_hooks", "_forward_pre_hooks_with_kwargs", "_forward_hooks",
    "_forward_hooks_with_kwargs", "_forward_hooks_always_called", "_backward_hooks",
    "_backward_pre_hooks", "_state_dict_hooks", "_state_dict_pre_hooks",
    "_load_state_dict_pre_hooks", "_load_state_dict_post_hooks",
)
OPTIMIZER_HOOK_DICTS = ("_optimizer_step_pre_hooks", "_optimizer_step_post_hooks")
GLOBAL_HOOK_DICTS = ("_global_forward_pre_hooks", "_global_forward_hooks",
                     "_global_forward_hooks_always_called", "_global_forward_hooks_with_kwargs",
                     "_global_backward_hooks", "_global_backward_pre_hooks")


def hook_state(model, optimizer=None) -> dict:
    """Every hook on ``model``'s modules and parameters, on ``optimizer``, and global module hooks."""
    state = {}
    for name, module in model.named_modules():
        for attr in MODULE_HOOK_DICTS:
            state[(name, attr)] = dict(getattr(module, attr))
        state[(name, "_is_full_backward_hook")] = module._is_full_backward_hook
    for name, p in model.named_parameters():
        hooks = getattr(p, "_post_accumulate_grad_hooks", None)
        state[(name, "post_accumulate")] = dict(hooks) if hooks else {}
        state[(name, "backward_hooks")] = dict(p._backward_hooks) if p._backward_hooks else {}
    for attr in GLOBAL_HOOK_DICTS:
        state[("global", attr)] = dict(getattr(torch.nn.modules.module, attr))
    if optimizer is not None:
        for attr in OPTIMIZER_HOOK_DICTS:
            state[("optimizer", attr)] = dict(getattr(optimizer, attr))
    return state


def mlp(sizes, act=torch.nn.ReLU, **act_kwargs) -> torch.nn.Sequential:
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(torch.nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(act(**act_kwargs))
    return torch.nn.Sequential(*layers)


def train_step(model, optimizer, x, y, loss_fn=torch.nn.functional.mse_loss):
    optimizer.zero_grad()
    loss = loss_fn(model(x), y)
    loss.backward()
    optimizer.step()
    return loss


# importlib mode: test modules cannot import this file, so the helpers are fixtures.
@pytest.fixture(name="hook_state")
def _hook_state_fixture():
    return hook_state


@pytest.fixture(name="mlp")
def _mlp_fixture():
    return mlp


@pytest.fixture(name="train_step")
def _train_step_fixture():
    return train_step
