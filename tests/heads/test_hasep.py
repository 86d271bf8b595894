"""hasep against a literal float64 transcription of HASeparator (004, eq. 4-8) that builds the B×N×C normals.

The transcription follows Section III-C step by step, in the paper's layout (W is N × C) and names, and
builds the normal tensor H of eq. (5) explicitly; the head never does. Their agreement, loss and
gradients, is the proof that the fast form (cos_y − cos_j)/√(2 − 2ŵ_y·ŵ_j) is the paper's projection.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from featspace import heads

B, N, C = 10, 6, 5


def reference_haseparator(E, W, L, sigma, m, include_target_term=False):
    """004 Section III-C. E [B, N] embeddings, W [N, C] layer weights, L [B] labels; returns (C_all, C_c, C_t)."""
    batch, classes = E.shape[0], W.shape[1]
    E_hat = E / E.norm(dim=1, keepdim=True)                             # l2 over the neurons axis N
    W_hat = W / W.norm(dim=0, keepdim=True)
    O = sigma * torch.einsum("ik,kj->ij", E_hat, W_hat)                   # eq. (4)
    T = W_hat[:, L].T[:, :, None]                                         # target weights, B × N × 1
    W_plus = W_hat[None].expand(batch, -1, -1)                            # Ŵ⁺, B × N × C
    T_plus = T.expand(-1, -1, classes)                                    # T⁺, B × N × C
    H = T_plus - W_plus                                                   # eq. (5), normal ŵ_y − ŵ_j (papers README)
    P = torch.zeros(batch, classes, dtype=E.dtype)
    for i in range(batch):                                                # eq. (6), Ĥ = H / ‖H‖ over N
        for j in range(classes):
            if j != int(L[i]):                                            # j = y: zero normal, no hyperplane
                P[i, j] = E_hat[i] @ (H[i, :, j] / H[i, :, j].norm())
    C_t = 0.0
    for i in range(batch):                                                # eq. (7)-(8)
        for j in range(classes):
            if j != int(L[i]) or include_target_term:
                C_t = C_t + (m - torch.minimum(P[i, j], torch.tensor(m, dtype=E.dtype)))
    C_t = C_t / batch
    C_c = 0.0
    for i in range(batch):                                                # the regular cross-entropy on O
        C_c = C_c - torch.log(torch.exp(O[i, int(L[i])]) / sum(torch.exp(O[i, j]) for j in range(classes)))
    C_c = C_c / batch
    return C_c + C_t, C_c, C_t


def inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    E = torch.randn(B, N, generator=g, dtype=torch.float64)
    W = torch.randn(C, N, generator=g, dtype=torch.float64)              # the head's nn.Linear layout
    L = torch.tensor([0, 1, 2, 3, 4, 0, 1, 2, 3, 3])
    return E, W, L


def compare(margin, scale, include_target_term=False, seed=0, batch=B):
    E, W, L = inputs(seed)
    E, L = E[:batch], L[:batch]
    head = heads.build("hasep", N, C, margin=margin, scale=scale, include_target_term=include_target_term).double()
    with torch.no_grad():
        head.weight.copy_(W)
    Eh = E.clone().requires_grad_()
    out = head(Eh, L)
    Er, Wr = E.clone().requires_grad_(), W.clone().requires_grad_()
    total, ce, penalty = reference_haseparator(Er, Wr.T, L, scale, margin, include_target_term)
    torch.testing.assert_close(out.loss, total, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out.parts["ce"], ce, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out.parts["penalty"], penalty, rtol=1e-12, atol=1e-12)
    out.loss.backward()
    total.backward()
    torch.testing.assert_close(Eh.grad, Er.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(head.weight.grad, Wr.grad, rtol=1e-10, atol=1e-12)
    assert [n for n, _ in head.named_parameters()] == ["weight"]
    return out


@pytest.mark.parametrize("batch", [B, 3])  # C ≤ B: target-weight cosines from the Gram matrix; C > B: per sample
@pytest.mark.parametrize("margin, scale", [(0.1, 1.0), (0.5, 16.0), (1.0, 64.0)])
def test_hasep_matches_literal_with_explicit_normals(margin, scale, batch):
    out = compare(margin, scale, batch=batch)
    assert out.parts["penalty"] > 0, "inputs must leave some projections below the margin"


def test_include_target_term_adds_the_constant_margin_and_no_gradient():
    with_term = compare(0.3, 2.0, include_target_term=True)
    without = compare(0.3, 2.0)
    torch.testing.assert_close(with_term.loss - without.loss, torch.tensor(0.3, dtype=torch.float64))


def test_logits_are_scaled_cosines_eq4():
    E, W, L = inputs()
    head = heads.build("hasep", N, C, scale=7.0).double()
    with torch.no_grad():
        head.weight.copy_(W)
    expected = 7.0 * (E / E.norm(dim=1, keepdim=True)) @ (W / W.norm(dim=1, keepdim=True)).T
    torch.testing.assert_close(head(E, L).logits, expected)
    torch.testing.assert_close(head.predict(E), expected)


def test_penalty_vanishes_when_every_projection_clears_the_margin():
    """Orthonormal class weights and embeddings on their class weight: every x̂·ĥ_j = 1/√2."""
    weight = torch.eye(C, N, dtype=torch.float64)
    head = heads.build("hasep", N, C, margin=0.5).double()
    with torch.no_grad():
        head.weight.copy_(weight)
    labels = torch.arange(C)
    out = head(weight.clone(), labels)  # x̂·ĥ_j = (1 − 0)/√2 ≈ 0.707 > 0.5
    assert out.parts["penalty"] == 0


def test_coinciding_class_weights_give_finite_loss_and_grads():
    head = heads.build("hasep", N, C)
    with torch.no_grad():
        head.weight[3] = 2.0 * head.weight[2]
    x = torch.randn(8, N, requires_grad=True)
    out = head(x, torch.tensor([2, 3, 2, 3, 0, 1, 4, 4]))
    out.loss.backward()
    assert torch.isfinite(out.loss) and torch.isfinite(x.grad).all() and torch.isfinite(head.weight.grad).all()


def test_never_allocates_a_batch_by_dim_by_classes_tensor():
    """The largest single allocation of a forward + backward stays far below the B×d×C tensor of eq. (5)."""
    batch, dim, classes = 64, 128, 256
    head = heads.build("hasep", dim, classes)
    x = torch.randn(batch, dim, requires_grad=True)
    y = torch.randint(0, classes, (batch,))
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        head(x, y).loss.backward()
    largest = max(event.cpu_memory_usage for event in prof.events())
    literal_bytes = batch * dim * classes * 4
    assert 0 < largest < literal_bytes / 8, (largest, literal_bytes)


@pytest.mark.parametrize(
    "hparams, match",
    [
        ({"margin": 0.0}, "margin"),
        ({"margin": 1.5}, "margin"),
        ({"margin": -0.1}, "margin"),
        ({"margin": float("nan")}, "margin"),
        ({"margin": True}, "margin"),
        ({"scale": 0.0}, "scale"),
        ({"scale": -2.0}, "scale"),
        ({"scale": math.inf}, "scale"),
        ({"include_target_term": "yes"}, "include_target_term"),
    ],
)
def test_bad_hparams_raise_value_error(hparams, match):
    with pytest.raises(ValueError, match=match):
        heads.build("hasep", N, C, **hparams)


def test_defaults_are_the_authors_code():
    assert heads.default_hparams("hasep") == {"margin": 0.1, "scale": 1.0, "include_target_term": False}
    assert heads.get_head_class("hasep").uses_batch_statistics is False
