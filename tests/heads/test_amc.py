"""amc against a literal float64 transcription of AMC-Loss (Choi et al. 2020) with the LACE paper's weights.

Reference: Choi, Som, Turaga, "AMC-Loss: Angular Margin Contrastive Loss for Improved Explainability in
Image Classification" (2020): on unit embeddings, the geodesic distance θ_ij = arccos(x̂_iᵀx̂_j); pairs of
the same class pay θ_ij², pairs of different classes pay max(0, m − θ_ij)². LACE (000, Section 4) trains
it as 0.9·softmax CE + 0.1·AMC.
"""

from __future__ import annotations

import math

import pytest
import torch

from featspace import heads

B, D, C = 7, 5, 4
LABELS = torch.tensor([0, 1, 2, 3, 0, 1, 1])


def reference_ce(x, y, W, b):
    total = 0.0
    for i in range(x.shape[0]):
        z = [sum(W[c, k] * x[i, k] for k in range(x.shape[1])) + b[c] for c in range(W.shape[0])]
        total = total - torch.log(torch.exp(z[int(y[i])]) / sum(torch.exp(zc) for zc in z))
    return total / x.shape[0]


def reference_amc(x, y, margin):
    """Mean over pairs i < j of θ² (same class) or max(0, m − θ)² (different classes), θ = arccos(x̂_iᵀx̂_j)."""
    n = x.shape[0]
    unit = [x[i] / torch.sqrt(sum(x[i, k] ** 2 for k in range(x.shape[1]))) for i in range(n)]
    terms = []
    for i in range(n):
        for j in range(i + 1, n):
            theta = torch.arccos(sum(unit[i][k] * unit[j][k] for k in range(x.shape[1])))
            if int(y[i]) == int(y[j]):
                terms.append(theta**2)
            else:
                terms.append(torch.clamp(margin - theta, min=0.0) ** 2)
    return sum(terms) / len(terms)


def reference_total(x, y, W, b, margin=0.5, lam=0.1):
    return (1 - lam) * reference_ce(x, y, W, b) + lam * reference_amc(x, y, margin)


def compare(head, x, y, margin, lam, rel=1e-12):
    xh = x.clone().requires_grad_()
    xr = x.clone().requires_grad_()
    W = head.weight.detach().clone().requires_grad_()
    b = head.bias.detach().clone().requires_grad_()
    out = head(xh, y)
    ref = reference_total(xr, y, W, b, margin, lam)
    assert math.isclose(out.loss.item(), ref.item(), rel_tol=rel), (out.loss.item(), ref.item())
    out.loss.backward()
    ref.backward()
    torch.testing.assert_close(xh.grad, xr.grad)
    torch.testing.assert_close(head.weight.grad, W.grad)
    torch.testing.assert_close(head.bias.grad, b.grad)
    return out


def make(**hparams):
    torch.manual_seed(0)
    return heads.build("amc", D, C, **hparams).double()


def embeddings(seed=1, b=B):
    return torch.randn(b, D, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_defaults_are_the_lace_papers_settings():
    head = heads.build("amc", D, C)
    assert head.margin == 0.5 and head.lam == 0.1 and head.uses_batch_statistics


def test_amc_matches_literal_transcription():
    """0.9·CE + 0.1·AMC, loss and gradients w.r.t. embeddings, weight and bias."""
    head = make()
    out = compare(head, embeddings(), LABELS, 0.5, 0.1)
    assert set(out.parts) == {"ce", "amc"}


def test_negative_pairs_inside_the_margin_are_penalised():
    """A large margin puts negative pairs inside it, so the hinge branch is exercised with gradients."""
    head = make(margin=2.0, lam=0.5)
    x = embeddings(seed=4)
    compare(head, x, LABELS, 2.0, 0.5)
    assert reference_amc(x, torch.arange(B), 2.0) > 0  # the hinge is active: some pair lies inside m


@pytest.mark.parametrize("margin, lam", [(0.0, 0.1), (0.5, 0.0), (0.5, 1.0), (math.pi, 0.3)])
def test_hparam_switches(margin, lam):
    head = make(margin=margin, lam=lam)
    compare(head, embeddings(seed=2), LABELS, margin, lam)


def test_lam_zero_is_plain_softmax():
    torch.manual_seed(0)
    amc = heads.build("amc", D, C, lam=0.0)
    torch.manual_seed(0)
    softmax = heads.build("softmax", D, C)
    x = embeddings().float()
    torch.testing.assert_close(amc(x, LABELS).loss, softmax(x, LABELS).loss)


def test_all_labels_distinct_uses_only_negative_pairs():
    head = make(margin=2.0)
    x, y = embeddings(b=C), torch.arange(C)
    compare(head, x, y, 2.0, 0.1)


def test_no_pair_gives_zero_with_gradient():
    head = make()
    x = embeddings(b=1).requires_grad_()
    out = head(x, torch.tensor([2]))
    assert out.parts["amc"].item() == 0.0 and out.parts["amc"].requires_grad
    torch.testing.assert_close(out.loss, 0.9 * out.parts["ce"])
    out.loss.backward()
    assert torch.isfinite(x.grad).all()


def test_identical_and_antipodal_embeddings_keep_finite_gradients():
    """θ = 0 between a pair and θ = π: arccos has an infinite slope at ±1, the clamp keeps it finite."""
    head = make(margin=1.0)
    base = embeddings(b=1)[0]
    x = torch.stack([base, base, -base, 2 * base]).requires_grad_()
    y = torch.tensor([0, 1, 0, 0])  # (0,1) identical negatives, (0,2) antipodal positives
    out = head(x, y)
    out.loss.backward()
    assert torch.isfinite(out.loss) and torch.isfinite(x.grad).all()


def test_pairs_come_from_the_gathered_batch():
    """Under DDP the pair loss runs on the global batch (gather_batch), the CE on the local one."""
    head = make()
    local, other = embeddings(seed=1), embeddings(seed=9, b=3)
    other_labels = torch.tensor([3, 0, 2])
    head.gather_batch = lambda x, y: (torch.cat([x, other]), torch.cat([y, other_labels]))
    out = head(local, LABELS)
    torch.testing.assert_close(out.parts["amc"], reference_amc(torch.cat([local, other]),
                                                              torch.cat([LABELS, other_labels]), 0.5))
    torch.testing.assert_close(out.parts["ce"], reference_ce(local, LABELS, head.weight, head.bias))


@pytest.mark.parametrize(
    "hparams, match",
    [(dict(margin=-0.1), "margin"), (dict(margin=4.0), "margin"), (dict(margin=float("nan")), "margin"),
     (dict(lam=1.5), "lam"), (dict(lam=-0.1), "lam"), (dict(lam=True), "lam"), (dict(margin="0.5"), "margin")],
)
def test_hparam_validation(hparams, match):
    with pytest.raises(ValueError, match=match):
        heads.build("amc", D, C, **hparams)
