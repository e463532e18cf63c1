"""Parameter-behaviour checks: each catches its planted fault and stays quiet on a correct model."""

from __future__ import annotations

import re

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from dlkernels.debug import (assert_finite, assert_no_batch_mixing,  # noqa: E402
                          assert_optimizer_isolation, assert_output_range,
                          assert_params_change, assert_params_unchanged,
                          check_optimizer_isolation, check_training_step)

mse = nn.functional.mse_loss
N, D_IN, H, D_OUT = 16, 6, 12, 3


def state_of(model, optimizer=None) -> dict:
    """Parameters, grads, buffers, optimizer state and torch's RNG, copied."""
    state = {f"param {n}": p.detach().clone() for n, p in model.named_parameters()}
    state.update({f"grad {n}": None if p.grad is None else p.grad.clone()
                  for n, p in model.named_parameters()})
    state.update({f"buffer {n}": b.clone() for n, b in model.named_buffers()})
    if optimizer is not None:
        for i, s in enumerate(optimizer.state.values()):
            state.update({f"opt {i} {k}": v.clone() for k, v in s.items()})
        state["opt groups"] = [{k: v for k, v in g.items() if k != "params"}
                               for g in optimizer.param_groups]
    state["rng"] = torch.get_rng_state()
    return state


def assert_same_state(a, b):
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], torch.Tensor):
            assert torch.equal(a[k], b[k]) or (torch.isnan(a[k]) == torch.isnan(b[k])).all(), k
        else:
            assert a[k] == b[k], k


def make(mlp, *, sizes=(D_IN, H, H, D_OUT), act=nn.Tanh, opt=torch.optim.SGD, **opt_kwargs):
    model = mlp(list(sizes), act=act)
    optimizer = opt(model.parameters(), lr=0.1, **opt_kwargs)
    batch = (torch.randn(N, sizes[0]), torch.randn(N, sizes[-1]))
    return model, optimizer, batch


# -- a correct model: no false alarm --------------------------------------------------------
def test_a_correct_model_passes_every_check(mlp):
    model, opt, batch = make(mlp, opt=torch.optim.Adam)
    model.append(nn.Sigmoid())
    report = check_training_step(model, mse, batch, opt, output_range=(0, 1))
    assert report.ok, report.problems()
    assert report.changed == [n for n, _ in model.named_parameters()]
    assert report.not_updated == report.frozen_moved == [] and report.nonfinite == {}
    assert all(v > 0 for v in report.changes.values())
    assert_params_change(model, mse, batch, opt)
    assert_finite(model, mse, batch, opt)
    assert_output_range(model, batch, (0, 1))
    assert_no_batch_mixing(model, batch[0])
    model[0].requires_grad_(False)
    assert_params_unchanged(model, mse, batch, opt)
    report.assert_ok()
    assert "no problems found" in str(report)


def test_report_changes_match_a_manual_step(mlp):
    model, opt, batch = make(mlp)
    twin, twin_opt, _ = make(mlp)
    twin.load_state_dict(model.state_dict())
    report = check_training_step(model, mse, batch, opt)
    twin_opt.zero_grad()
    mse(twin(batch[0]), batch[1]).backward()
    twin_opt.step()
    for (name, p), q in zip(model.named_parameters(), twin.parameters()):
        assert report.changes[name] == pytest.approx(float((q - p).detach().abs().max()), rel=1e-6)
    with torch.no_grad():
        assert report.loss == pytest.approx(float(mse(model(batch[0]), batch[1])))


# -- planted faults ----------------------------------------------------------------------------
def test_catches_an_updated_frozen_layer(mlp):
    # Layer 0 is meant to be frozen, but it still requires grad and is in the optimizer.
    model, opt, batch = make(mlp)
    report = check_training_step(model, mse, batch, opt, frozen=model[0])
    assert report.frozen_moved == ["0.weight", "0.bias"]
    assert report.expected_to_change == ["2.weight", "2.bias", "4.weight", "4.bias"]
    with pytest.raises(AssertionError) as info:
        assert_params_unchanged(model, mse, batch, opt, params=["0.weight", ("0.bias", model[0].bias)])
    assert re.search(r"0\.weight \(by up to [\d.e-]+\), 0\.bias", str(info.value))
    assert "2.weight" not in str(info.value)
    # Fixed: frozen for real.
    model[0].requires_grad_(False)
    assert_params_unchanged(model, mse, batch, opt, params=[model[0].weight, model[0].bias])


class SneakyBuffer(nn.Module):
    """A parameter with requires_grad=False that forward updates in place."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(D_IN, D_OUT)
        self.scale = nn.Parameter(torch.ones(D_OUT), requires_grad=False)

    def forward(self, x):
        with torch.no_grad():
            self.scale.mul_(0.9)
        return self.lin(x) * self.scale


def test_catches_a_non_trainable_parameter_that_moves():
    # torchtest looked at trainable parameters only and missed this.
    model = SneakyBuffer()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    batch = (torch.randn(N, D_IN), torch.randn(N, D_OUT))
    report = check_training_step(model, mse, batch, opt)
    assert report.expected_frozen == ["scale"] and report.frozen_moved == ["scale"]
    assert report.changes["scale"] == pytest.approx(0.1)
    with pytest.raises(AssertionError, match=r"1 parameter expected to stay frozen changed: scale"):
        assert_params_unchanged(model, mse, batch, opt)


class Detached(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(D_IN, H)
        self.head = nn.Linear(H, D_OUT)

    def forward(self, x):
        return self.head(torch.tanh(self.embed(x)).detach())  # the fault: cuts embed off


def test_catches_a_layer_cut_off_by_detach():
    model = Detached()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    batch = (torch.randn(N, D_IN), torch.randn(N, D_OUT))
    report = check_training_step(model, mse, batch, opt)
    assert report.not_updated == ["embed.weight", "embed.bias"]
    with pytest.raises(AssertionError) as info:
        assert_params_change(model, mse, batch, opt)
    assert "2 parameters did not change in the training step: embed.weight, embed.bias" in str(info.value)
    assert "head" not in str(info.value)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_catches_one_non_finite_element(mlp, bad):
    model, opt, batch = make(mlp)
    with torch.no_grad():
        model[2].weight[3, 1] = bad   # one element of one parameter
    report = check_training_step(model, mse, batch, opt)
    assert report.nonfinite["parameters before the step"] == ["2.weight"]
    if bad != bad:  # NaN reaches the output; tanh(inf) = 1 does not
        assert report.nonfinite["outputs"] == ["outputs"] and report.nonfinite["loss"] == ["loss"]
    assert "2.weight" in report.nonfinite["parameters after the step"]
    with pytest.raises(AssertionError) as info:
        assert_finite(model, mse, batch, opt)
    first = str(info.value).splitlines()[1]
    assert first == "  - parameters before the step: 2.weight"


def test_catches_an_inf_in_one_output_element():
    class OneInf(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(D_IN, D_OUT)

        def forward(self, x):
            out = self.lin(x)
            return out, out.detach().index_put((torch.tensor([0]), torch.tensor([0])),
                                               torch.tensor(float("inf")))

    model = OneInf()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    batch = (torch.randn(N, D_IN), torch.randn(N, D_OUT))
    report = check_training_step(model, lambda out, y: mse(out[0], y), batch, opt)
    assert report.nonfinite == {"outputs": ["outputs[1]"]}
    assert report.not_updated == []


def test_catches_batch_norm_mixing_samples_in_training_mode():
    model = nn.Sequential(nn.Linear(D_IN, H), nn.BatchNorm1d(H), nn.ReLU(), nn.Linear(H, D_OUT))
    x = torch.randn(N, D_IN)
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    with pytest.raises(AssertionError) as info:
        assert_no_batch_mixing(model, x)
    message = str(info.value)
    assert f"the outputs of {N} samples" in message
    assert "mixed by: 1 (BatchNorm1d in training mode)" in message
    assert all(torch.equal(b, buffers[n]) for n, b in model.named_buffers())  # restored
    model.eval()
    assert_no_batch_mixing(model, x)
    assert_no_batch_mixing(model, x, samples=3)


class MixesOnPurpose(nn.Module):
    def forward(self, x):
        return x - x[:1]   # every sample minus the first one


def test_batch_mixing_names_the_module_and_the_samples():
    model = nn.Sequential(nn.Linear(D_IN, H), MixesOnPurpose(), nn.Linear(H, D_OUT)).eval()
    with pytest.raises(AssertionError) as info:
        assert_no_batch_mixing(model, torch.randn(N, D_IN))
    message = str(info.value)
    # Sample 0's own output is 0 - its dependence on itself cancels; samples 1..N-1 depend on 0.
    assert f"the outputs of {N - 1} samples (1, 2," in message
    assert "mixed by: 1 (MixesOnPurpose)" in message


def test_catches_outputs_outside_their_range(mlp):
    model, opt, batch = make(mlp)
    report = check_training_step(model, mse, batch, opt, output_range=(0, 1))
    lo, hi = report.out_of_range["outputs"]
    assert lo < 0
    with pytest.raises(AssertionError, match=r"outputs spans \[-[\d.]+, [\d.]+\]"):
        assert_output_range(model, batch, (0, 1))
    model.append(nn.Sigmoid())
    assert_output_range(model, batch, (0, 1))
    assert_output_range(model, batch, (0, None))
    with pytest.raises(AssertionError, match="outputs spans"):
        assert_output_range(model, batch, (None, 0.5))


# -- batch and output conventions ----------------------------------------------------------------
class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(D_IN, D_OUT), nn.Linear(2, D_OUT)

    def forward(self, x, z):
        return {"sum": self.a(x) + self.b(z), "prob": torch.sigmoid(self.a(x)),
                "meta": "not a tensor"}


def test_tuple_inputs_dict_outputs():
    model = TwoInputs()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    batch = ((torch.randn(N, D_IN), torch.randn(N, 2)), torch.randn(N, D_OUT))
    report = check_training_step(model, lambda out, y: mse(out["sum"], y), batch, opt,
                                 output_range=(0, 100))
    assert report.not_updated == []
    assert list(report.out_of_range) == ["outputs['sum']"]   # prob is in (0, 1)
    assert_no_batch_mixing(model, batch[0])


class DictModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(D_IN, D_OUT)

    def forward(self, batch):
        return self.lin(batch["x"])


def test_dict_batch_goes_to_model_and_loss_whole():
    model = DictModel()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    batch = {"x": torch.randn(N, D_IN), "y": torch.randn(N, D_OUT)}
    seen = []

    def loss_fn(out, b):
        seen.append(b)
        return mse(out, b["y"])

    assert check_training_step(model, loss_fn, batch, opt).ok
    assert seen == [batch]
    assert_no_batch_mixing(model, {"x": batch["x"]})


def test_tensor_batch_is_an_autoencoder_batch(mlp):
    model = mlp([D_IN, H, D_IN])
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(N, D_IN)
    report = check_training_step(model, mse, x, opt)
    with torch.no_grad():
        assert report.ok and report.loss == pytest.approx(float(mse(model(x), x)))


# -- restoring -----------------------------------------------------------------------------------
def test_restores_everything_by_default_and_keeps_the_step_on_request():
    model = nn.Sequential(nn.Linear(D_IN, H), nn.BatchNorm1d(H), nn.Dropout(0.5), nn.Linear(H, D_OUT))
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    batch = (torch.randn(N, D_IN), torch.randn(N, D_OUT))
    mse(model(batch[0]), batch[1]).backward()   # some grads and Adam state exist already
    opt.step()
    before = state_of(model, opt)
    check_training_step(model, mse, batch, opt)
    assert_same_state(state_of(model, opt), before)
    for check in (lambda: assert_params_change(model, mse, batch, opt),
                  lambda: assert_finite(model, mse, batch, opt),
                  lambda: assert_output_range(model, batch, (-100, 100)),
                  lambda: pytest.raises(AssertionError, assert_no_batch_mixing, model, batch[0])):
        check()
        assert_same_state(state_of(model, opt), before)
    report = check_training_step(model, mse, batch, opt, restore=False)
    assert not report.restored
    after = state_of(model, opt)
    assert not torch.equal(after["param 0.weight"], before["param 0.weight"])
    assert not torch.equal(after["buffer 1.running_mean"], before["buffer 1.running_mean"])


# -- bad input --------------------------------------------------------------------------------------
class NoParams(nn.Module):
    def forward(self, x):
        return x * 2


@pytest.mark.parametrize("change, exc, message", [
    ({"model": NoParams()}, ValueError, "has no parameters"),
    ({"model": "net"}, TypeError, "model must be a torch.nn.Module"),
    ({"loss_fn": 3}, TypeError, "loss_fn must be callable"),
    ({"optimizer": None}, TypeError, "optimizer must be a torch.optim.Optimizer"),
    ({"batch": (np.zeros((N, D_IN)), torch.zeros(N, D_OUT))}, TypeError,
     r"batch\[0\] must be a torch.Tensor .* got numpy.ndarray"),
    ({"batch": {"x": torch.zeros(N, D_IN), "y": [torch.zeros(1), 3]}}, TypeError,
     r"batch\['y'\]\[1\] must be a torch.Tensor"),
    ({"batch": (torch.zeros(N, D_IN),) * 3}, ValueError, "must have 2 items; got 3"),
    ({"batch": []}, TypeError, "holding no tensor"),
    ({"frozen": ["0.wieght"]}, ValueError, r"frozen\[0\] names no parameter .*'0.wieght'"),
    ({"frozen": "nonexistent"}, ValueError, "frozen names no parameter"),
    ({"params": [torch.zeros(3)]}, ValueError, r"params\[0\] is a tensor of shape \(3,\) that is not"),
    ({"params": [("2.weight", torch.zeros(3))]}, ValueError, "not that parameter"),
    ({"params": [3.5]}, TypeError, r"params\[0\] must be a parameter name"),
    ({"params": ["0.bias"], "frozen": ["0.bias"]}, ValueError, "params and frozen both name 0.bias"),
    ({"output_range": (1, 0)}, ValueError, "low must not exceed high"),
    ({"output_range": (0, float("nan"))}, ValueError, "output_range high"),
    ({"output_range": 5}, TypeError, "output_range must be a"),
])
def test_bad_input_is_named_and_changes_nothing(mlp, change, exc, message):
    model, opt, batch = make(mlp)
    args = {"model": model, "loss_fn": mse, "batch": batch, "optimizer": opt, **change}
    before = state_of(model, opt)
    with pytest.raises(exc, match=message):
        check_training_step(**args)
    assert_same_state(state_of(model, opt), before)


def test_a_failing_loss_leaves_the_model_as_it_was(mlp):
    model, opt, batch = make(mlp)
    model.insert(1, nn.BatchNorm1d(H))
    before = state_of(model, opt)
    with pytest.raises(ValueError, match=r"loss_fn must return a scalar, got a tensor of shape \(16, 3\)"):
        check_training_step(model, lambda out, y: out - y, batch, opt)
    assert_same_state(state_of(model, opt), before)
    with pytest.raises(TypeError, match="loss_fn must return a tensor"):
        check_training_step(model, lambda out, y: 1.0, batch, opt)
    assert_same_state(state_of(model, opt), before)


def test_bad_input_to_the_assertions(mlp):
    model, opt, batch = make(mlp)
    with pytest.raises(ValueError, match="nothing to check: every parameter requires a gradient"):
        assert_params_unchanged(model, mse, batch, opt)
    with pytest.raises(ValueError, match="output_range must be a"):
        assert_output_range(model, batch, None)
    with pytest.raises(ValueError, match="at least 2 samples"):
        assert_no_batch_mixing(model, batch[0][:1])
    with pytest.raises(TypeError, match="floating-point input"):
        assert_no_batch_mixing(nn.Embedding(10, 4), torch.arange(4))
    with pytest.raises(ValueError, match="disagree on the batch size"):
        assert_no_batch_mixing(TwoInputs(), (torch.randn(4, D_IN), torch.randn(5, 2)))
    with pytest.raises(ValueError, match="samples must be"):
        assert_no_batch_mixing(model, batch[0], samples=0)
    with pytest.raises(ValueError, match="atol"):
        assert_no_batch_mixing(model, batch[0], atol=-1)
    with pytest.raises(ValueError, match="no output of the model has the batch size"):
        assert_no_batch_mixing(nn.Sequential(model, nn.Flatten(0)), batch[0])


# -- two optimizers (GAN) -------------------------------------------------------------------------
Z = 4


def gan(detach=True, generator_steps_discriminator=False):
    g = nn.Sequential(nn.Linear(Z, 8), nn.Tanh(), nn.Linear(8, D_IN))
    d = nn.Sequential(nn.Linear(D_IN, 8), nn.LeakyReLU(0.2), nn.Linear(8, 1))
    opt_g = torch.optim.Adam(g.parameters(), lr=1e-2)
    opt_d = torch.optim.Adam(d.parameters(), lr=1e-2)
    real, z = torch.randn(N, D_IN), torch.randn(N, Z)
    bce = nn.functional.binary_cross_entropy_with_logits

    def d_step():
        opt_d.zero_grad()
        fake = g(z)
        fake = fake.detach() if detach else fake   # fault 1: no detach
        loss = bce(d(real), torch.ones(N, 1)) + bce(d(fake), torch.zeros(N, 1))
        loss.backward()
        opt_d.step()

    def g_step():
        opt_g.zero_grad()
        loss = bce(d(g(z)), torch.ones(N, 1))
        loss.backward()
        opt_g.step()
        if generator_steps_discriminator:    # fault 2: a copy-pasted step
            opt_d.step()

    steps = {"discriminator": (opt_d, d_step), "generator": (opt_g, g_step)}
    return nn.ModuleDict({"G": g, "D": d}), steps


def test_gan_steps_are_isolated():
    model, steps = gan()
    report = assert_optimizer_isolation(steps, model=model)
    assert report.ok and report.moved == {"discriminator": [], "generator": []}
    assert report.owners["generator"] == ["G.0.weight", "G.0.bias", "G.2.weight", "G.2.bias"]
    # The generator's loss flows through the discriminator: its grads change, legitimately.
    assert report.grads_touched["discriminator"] == []
    assert report.grads_touched["generator"] == ["D.0.weight", "D.0.bias", "D.2.weight", "D.2.bias"]


def test_catches_a_step_that_moves_the_other_players_parameters():
    model, steps = gan(generator_steps_discriminator=True)
    report = check_optimizer_isolation(steps, model=model)
    assert report.moved == {"discriminator": [], "generator": ["D.0.weight", "D.0.bias",
                                                               "D.2.weight", "D.2.bias"]}
    with pytest.raises(AssertionError, match=r"during the 'generator' step, 4 parameters of "
                                             r"other optimizers changed: D\.0\.weight"):
        assert_optimizer_isolation(steps, model=model)


def test_reports_a_missing_detach_in_the_discriminator_step():
    model, steps = gan(detach=False)
    report = assert_optimizer_isolation(steps, model=model)   # nothing moved ...
    assert report.grads_touched["discriminator"] == ["G.0.weight", "G.0.bias",
                                                     "G.2.weight", "G.2.bias"]  # ... but G got grads


def test_isolation_restores_and_validates():
    model, steps = gan()
    opts = [opt for opt, _ in steps.values()]
    before = [state_of(model, o) for o in opts]
    check_optimizer_isolation(steps, model=model)
    for o, b in zip(opts, before):
        assert_same_state(state_of(model, o), b)
    report = check_optimizer_isolation(steps)   # unnamed parameters
    assert report.owners["discriminator"][0] == "discriminator.param_groups[0][0]"
    opt_d, d_step = steps["discriminator"]
    with pytest.raises(ValueError, match="at least two"):
        check_optimizer_isolation({"discriminator": steps["discriminator"]})
    with pytest.raises(TypeError, match="dict of name"):
        check_optimizer_isolation([steps["discriminator"], steps["generator"]])
    with pytest.raises(TypeError, match=r"steps\['x'\] step_fn must be callable"):
        check_optimizer_isolation({**steps, "x": (opt_d, None)})
    with pytest.raises(ValueError, match="held by the optimizers of both"):
        both = torch.optim.SGD(model.parameters(), lr=0.1)
        check_optimizer_isolation({"all": (both, d_step), "discriminator": (opt_d, d_step)},
                                  model=model)
