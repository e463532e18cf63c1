"""Shared models and state comparisons for the dlkernels.compress tests."""

import pytest

torch = pytest.importorskip("torch")


def mlp(sizes=(64, 300, 100, 10), seed=0, bn=False):
    torch.manual_seed(seed)
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(torch.nn.Linear(a, b))
        if i < len(sizes) - 2:
            if bn:
                layers.append(torch.nn.BatchNorm1d(b))
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers)


def snapshot(model) -> dict:
    """Everything a failed call must leave alone: tensors, buffers, hooks, attributes."""
    state = {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()}
    buffers = {n: b.detach().clone() for n, b in model.named_buffers()}
    hooks = [(n, len(m._forward_pre_hooks)) for n, m in model.named_modules()]
    attrs = [(n, sorted(k for k in vars(m) if k.startswith("_dlkernels"))) for n, m in model.named_modules()]
    return {"state": state, "buffers": buffers, "hooks": hooks, "attrs": attrs,
            "types": [type(m).__name__ for m in model.modules()]}


def _same(a, b) -> bool:
    """Equal values, NaN equal to NaN (a failed call on a NaN model changes nothing either)."""
    if a.is_floating_point():
        return a.shape == b.shape and bool(torch.isclose(a, b, rtol=0, atol=0, equal_nan=True).all())
    return torch.equal(a, b)


def assert_same_snapshot(a, b):
    assert a["state"].keys() == b["state"].keys()
    for k in a["state"]:
        assert _same(a["state"][k], b["state"][k]), k
    assert a["buffers"].keys() == b["buffers"].keys()
    for k in a["buffers"]:
        assert _same(a["buffers"][k], b["buffers"][k]), k
    assert a["hooks"] == b["hooks"] and a["attrs"] == b["attrs"] and a["types"] == b["types"]


@pytest.fixture
def assert_model_unchanged():
    """``assert_model_unchanged(model, call, exc, argname)``: raises, names, changes nothing."""
    import re

    def check(model, call, exc, argname):
        before = snapshot(model)
        with pytest.raises(exc, match=re.escape(argname)):
            call()
        assert_same_snapshot(before, snapshot(model))

    return check
