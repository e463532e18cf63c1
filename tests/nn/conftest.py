"""Checks every output layer with ``log_prob`` and ``predict`` must pass, as fixtures
(tests/nn is not a package: the test modules reach shared code through fixtures)."""

import pickle
import types

import pytest


@pytest.fixture
def layer_checks():
    torch = pytest.importorskip("torch")

    def gradients_match_log_prob(m, n_classes: int, dim: int) -> None:
        """Gradients of forward's NLL equal those of -log_prob gathered at the targets."""
        x = torch.randn(8, dim, dtype=torch.float64, requires_grad=True)
        y = torch.randint(0, n_classes, (8,))
        m(x, y).sum().backward()
        grads = [p.grad.clone() for p in m.parameters()] + [x.grad.clone()]
        m.zero_grad()
        x.grad = None
        (-m.log_prob(x).gather(1, y[:, None])).sum().backward()
        for a, b in zip(grads, [p.grad for p in m.parameters()] + [x.grad]):
            torch.testing.assert_close(a, b)

    def predict_is_topk(m, x, k: int) -> None:
        """predict(x, k) returns exactly topk of log_prob: classes and values."""
        classes, values = m.predict(x, k, return_log_prob=True)
        top_values, top_classes = m.log_prob(x).topk(k, dim=1)
        torch.testing.assert_close(values, top_values)
        assert torch.equal(classes, top_classes)
        assert torch.equal(m.predict(x, k), classes)

    def pickle_and_state_dict(m, fresh, x, path) -> None:
        """A pickled copy and a fresh layer loaded from the state dict give the same log_prob."""
        m.log_prob(x)  # fills any cache
        again = pickle.loads(pickle.dumps(m))
        torch.testing.assert_close(again.log_prob(x), m.log_prob(x))
        torch.save(m.state_dict(), path / "m.pt")
        fresh.load_state_dict(torch.load(path / "m.pt", weights_only=True))
        torch.testing.assert_close(fresh.log_prob(x), m.log_prob(x))

    def normalised_and_forward_is_nll(m, n_classes: int, dim: int) -> None:
        """log_prob rows sum to 1, and forward (reduction="none") is -log_prob[target]."""
        x = torch.randn(9, dim, dtype=torch.float64)
        lp = m.log_prob(x)
        assert lp.shape == (9, n_classes)
        torch.testing.assert_close(lp.exp().sum(1), torch.ones(9, dtype=torch.float64))
        y = torch.randint(0, n_classes, (9,))
        torch.testing.assert_close(m(x, y), -lp.gather(1, y[:, None]).squeeze(1))

    def leading_dimensions(m, n_classes: int, dim: int) -> None:
        """Inputs (2, 3, dim) give per-example losses (2, 3), log_prob (2, 3, V), predict
        (2, 3, k), and the same values as the flattened batch (reduction="none")."""
        x = torch.randn(2, 3, dim, dtype=torch.float64)
        y = torch.randint(0, n_classes, (2, 3))
        assert m(x, y).shape == (2, 3)
        assert m.log_prob(x).shape == (2, 3, n_classes)
        assert m.predict(x, 2).shape == (2, 3, 2)
        torch.testing.assert_close(m(x, y).reshape(-1), m(x.reshape(6, dim), y.reshape(6)))

    return types.SimpleNamespace(gradients_match_log_prob=gradients_match_log_prob,
                                 predict_is_topk=predict_is_topk,
                                 pickle_and_state_dict=pickle_and_state_dict,
                                 leading_dimensions=leading_dimensions,
                                 normalised_and_forward_is_nll=normalised_and_forward_is_nll)
