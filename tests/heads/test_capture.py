"""Every head under graph capture, with default settings: ``torch.export`` of the training forward (with labels)
and of the predict path, and ``torch.compile`` of the forward, each against the eager head.

The input checks read values on the host and skip themselves while a graph is captured
(``featspace.functional.capturing_graph``); the ``center`` head updates its centroids eagerly outside the graph.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from featspace import heads
from featspace.functional import capturing_graph

D, C = 6, 4
ALL = heads.names()


def batch(b: int = 12, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, D, generator=g), torch.arange(b) % C


def make(name: str):
    torch.manual_seed(0)
    return heads.build(name, D, C)


class Predict(nn.Module):
    """A head's predict path as a module's forward, the part a deployed model runs."""

    def __init__(self, head: heads.Head) -> None:
        super().__init__()
        self.head = head

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.head.predict(embeddings)


def assert_same_output(out, ref, **tolerance):
    torch.testing.assert_close(out.loss, ref.loss, **tolerance)
    torch.testing.assert_close(out.logits, ref.logits, **tolerance)
    assert out.parts.keys() == ref.parts.keys()
    for key in ref.parts:
        torch.testing.assert_close(out.parts[key], ref.parts[key], **tolerance)


def assert_same_state(a: nn.Module, b: nn.Module, **tolerance):
    for (key, value), other in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(value, other, msg=key, **tolerance)


@pytest.mark.parametrize("name", ALL)
def test_torch_export_of_the_training_forward_and_predict(name):
    head, reference = make(name), make(name)
    x, y = batch()
    program = torch.export.export(copy.deepcopy(head), (x, y))  # default settings: checks on, non-strict
    exported = program.module()
    for seed in (2, 3):  # two steps: buffers the forward updates (centroids, class means) follow the eager head
        x, y = batch(seed=seed)
        assert_same_output(exported(x, y), reference(x, y), rtol=1e-5, atol=1e-6)
    assert_same_state(exported, reference, rtol=1e-5, atol=1e-6)
    reference.eval()
    predict = torch.export.export(Predict(copy.deepcopy(reference)), (x,)).module()
    torch.testing.assert_close(predict(batch(seed=4)[0]), reference.predict(batch(seed=4)[0]), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ALL)
def test_torch_compile_gives_the_eager_loss_logits_and_gradients(name):
    """aot_eager runs AOTAutograd (functionalisation, the saved tensors of backward), the part where a buffer
    written in place during forward went wrong, without inductor's code generation (slow on a CPU)."""
    torch._dynamo.reset()
    head, reference = make(name), make(name)
    compiled = torch.compile(head, backend="aot_eager")
    for seed in (2, 3):
        x, y = batch(seed=seed)
        x_compiled, x_eager = x.clone().requires_grad_(), x.clone().requires_grad_()
        out, ref = compiled(x_compiled, y), reference(x_eager, y)
        assert_same_output(out, ref, rtol=1e-5, atol=1e-6)
        out.loss.backward()
        ref.loss.backward()
        torch.testing.assert_close(x_compiled.grad, x_eager.grad, rtol=1e-5, atol=1e-6)
        for (key, p), q in zip(head.named_parameters(), reference.parameters()):
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-6, msg=key)
    assert_same_state(head, reference, rtol=0, atol=0)  # updated buffers (centroids, class means) bit for bit


@pytest.mark.parametrize("name", ALL)
def test_torch_jit_trace_of_predict_saves_and_reloads(name, tmp_path):
    """TorchScript (``featspace export --format torchscript``) records the predict path; a trace cannot hold a
    Python autograd.Function, so the unit-row normalisation is an expression while tracing."""
    import warnings

    head = make(name)
    head(*batch())  # one training step: heads with running statistics have something to score by
    head.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit's deprecation notice
        torch.jit.save(torch.jit.trace(Predict(head), batch(b=2)[0]), str(tmp_path / "head.pt"))
        traced = torch.jit.load(str(tmp_path / "head.pt"))
    x = batch(seed=5)[0]
    torch.testing.assert_close(traced(x), head.predict(x), rtol=1e-6, atol=1e-6)


def test_center_under_inductor_trains_like_eager():
    """The default backend on the head whose forward updates a buffer: the centroids stay exactly those of an
    eager run (the update runs eagerly, outside the graph), the loss and gradients agree to float rounding."""
    torch._dynamo.reset()
    head, reference = make("center"), make("center")
    compiled = torch.compile(head)
    for seed in (2, 3, 4):
        x, y = batch(seed=seed)
        x_compiled, x_eager = x.clone().requires_grad_(), x.clone().requires_grad_()
        out, ref = compiled(x_compiled, y), reference(x_eager, y)
        torch.testing.assert_close(out.loss, ref.loss)
        out.loss.backward()
        ref.loss.backward()
        torch.testing.assert_close(x_compiled.grad, x_eager.grad)
        assert torch.equal(head.centroids, reference.centroids)


def test_capturing_graph_is_false_eagerly_and_checks_still_run():
    assert not capturing_graph()
    with pytest.raises(ValueError, match="NaN"):
        make("softmax").predict(torch.full((2, D), float("nan")))
    seen = []

    def probe(x):
        seen.append(capturing_graph())
        return x + 1

    torch.compile(probe, backend="eager")(torch.ones(2))
    with pytest.warns(FutureWarning):  # torch.jit's deprecation notice
        torch.jit.trace(probe, torch.ones(2))
    assert seen[0] and seen[1]
