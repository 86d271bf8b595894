"""cot against a literal float64 transcription of Complement Objective Training (Chen et al., ICLR 2019).

COT's complement entropy, per sample i with true class g and ŷ = softmax(z_i):
    H_i = −Σ_{j≠g} (ŷ_ij / (1 − ŷ_ig)) · log(ŷ_ij / (1 − ŷ_ig)),   Ĉ = (1/N) Σ_i H_i / N_C.
The transcription forms ŷ, divides by 1 − ŷ_g and takes the logs exactly so; the head uses a masked
log-softmax, which these tests show to be the same function.
"""

from __future__ import annotations

import math

import pytest
import torch

from featspace import heads
from featspace.heads.complement import complement_entropy

B, D, C = 7, 5, 4
LABELS = torch.tensor([0, 1, 2, 3, 0, 1, 1])


def literal_logits(x, W, b):
    return [[sum(W[c, k] * x[i, k] for k in range(x.shape[1])) + b[c] for c in range(W.shape[0])]
            for i in range(x.shape[0])]


def reference_cot(x, y, W, b, lam=1.0, normalizer=None):
    """CE − lam · (1/N) Σ_i H_i / normalizer, everything written out per sample and class."""
    num_classes = W.shape[0]
    normalizer = math.log(num_classes - 1) if normalizer is None else normalizer
    ce, complement = 0.0, 0.0
    for i, z in enumerate(literal_logits(x, W, b)):
        g = int(y[i])
        denominator = sum(torch.exp(zc) for zc in z)
        probs = [torch.exp(zc) / denominator for zc in z]
        ce = ce - torch.log(probs[g])
        entropy = 0.0
        for j in range(num_classes):
            if j != g:
                q = probs[j] / (1 - probs[g])
                entropy = entropy - q * torch.log(q)
        complement = complement + entropy
    n = x.shape[0]
    return ce / n - lam * (complement / n) / normalizer, ce / n, complement / n / normalizer


def make(**hparams):
    torch.manual_seed(0)
    return heads.build("cot", D, C, **hparams).double()


def embeddings(seed=1, b=B):
    return torch.randn(b, D, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def compare(head, lam, normalizer, x=None, y=LABELS):
    x = embeddings() if x is None else x
    xh, xr = x.clone().requires_grad_(), x.clone().requires_grad_()
    W = head.weight.detach().clone().requires_grad_()
    b = head.bias.detach().clone().requires_grad_()
    out = head(xh, y)
    ref, ref_ce, ref_complement = reference_cot(xr, y, W, b, lam, normalizer)
    assert math.isclose(out.loss.item(), ref.item(), rel_tol=1e-12, abs_tol=1e-14), (out.loss.item(), ref.item())
    torch.testing.assert_close(out.parts["ce"], ref_ce.detach())
    torch.testing.assert_close(out.parts["complement_entropy"], ref_complement.detach())
    out.loss.backward()
    ref.backward()
    torch.testing.assert_close(xh.grad, xr.grad)
    torch.testing.assert_close(head.weight.grad, W.grad)
    torch.testing.assert_close(head.bias.grad, b.grad)


def test_cot_matches_literal_transcription():
    compare(make(), lam=1.0, normalizer=math.log(C - 1))


@pytest.mark.parametrize("normalize, normalizer", [("log", math.log(C - 1)), ("classes", float(C)), ("none", 1.0)])
@pytest.mark.parametrize("lam", [0.0, 0.5, 1.0, 3.0])
def test_hparam_switches(normalize, normalizer, lam):
    compare(make(lam=lam, normalize=normalize), lam=lam, normalizer=normalizer)


def test_masked_log_softmax_equals_renormalised_probabilities():
    """The fast form equals ŷ_j/(1 − ŷ_g) written out, including a confident row (1 − ŷ_g ≈ 1e−5)."""
    g = torch.Generator().manual_seed(3)
    logits = 3 * torch.randn(6, 5, generator=g, dtype=torch.float64)
    labels = torch.tensor([0, 4, 2, 2, 1, 3])
    logits[0, 0] = 12.0
    fast = complement_entropy(logits, labels)
    probs = logits.softmax(1)
    for i in range(6):
        gi = int(labels[i])
        q = torch.cat([probs[i, :gi], probs[i, gi + 1:]]) / (1 - probs[i, gi])
        torch.testing.assert_close(fast[i], -(q * q.log()).sum(), rtol=1e-9, atol=1e-12)
    assert (fast >= 0).all() and (fast <= math.log(4) + 1e-12).all()


def test_complement_entropy_ignores_the_target_logit():
    """q_j = exp(z_j)/Σ_{k≠g} exp(z_k) does not involve z_g: the fast form gives exactly the same H however
    confident the model is, where the literal 1 − ŷ_g loses all its digits (1 − ŷ_g < 1e−16 at z_g = 40)."""
    logits = torch.randn(4, 5, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    labels = torch.tensor([1, 0, 4, 2])
    reference = complement_entropy(logits, labels)
    for target_logit in (-30.0, 0.0, 40.0, 400.0):
        moved = logits.clone()
        moved[torch.arange(4), labels] = target_logit
        assert torch.equal(complement_entropy(moved, labels), reference)


def test_uniform_complement_reaches_the_maximum():
    logits = torch.tensor([[5.0, 1.0, 1.0, 1.0], [2.0, 2.0, 7.0, 2.0]], dtype=torch.float64)
    torch.testing.assert_close(complement_entropy(logits, torch.tensor([0, 2])),
                               torch.full((2,), math.log(3), dtype=torch.float64))


def test_extreme_logits_stay_finite_in_float32():
    """Where 1 − ŷ_g rounds to 0 in float32 the literal form is NaN; the masked form is not."""
    head = heads.build("cot", D, C)
    with torch.no_grad():
        head.weight.mul_(1e4)
    x = torch.randn(B, D, requires_grad=True)
    out = head(x, LABELS)
    out.loss.backward()
    assert torch.isfinite(out.loss) and torch.isfinite(x.grad).all()
    assert torch.isfinite(head.weight.grad).all()


def test_two_classes_have_zero_complement_entropy():
    torch.manual_seed(0)
    head = heads.build("cot", D, 2).double()
    x = embeddings().requires_grad_()
    out = head(x, LABELS % 2)
    assert out.parts["complement_entropy"].item() == 0.0
    torch.testing.assert_close(out.loss, out.parts["ce"])
    out.loss.backward()
    assert torch.isfinite(x.grad).all()


def test_summed_step_matches_alternating_cot_steps_to_first_order():
    """One SGD step on CE − Ĉ vs COT's two alternating steps (CE, then −Ĉ at the updated weights), same
    learning rate η: the gap is O(η²), so dividing η by 10 divides the gap by about 100."""
    head = make()
    x = embeddings()

    def objectives(weight, bias):
        logits = x @ weight.T + bias
        ce = torch.nn.functional.cross_entropy(logits, LABELS)
        return ce, complement_entropy(logits, LABELS).mean() / math.log(C - 1)

    def gap(lr):
        w0, b0 = head.weight.detach().clone(), head.bias.detach().clone()
        # COT: primary step, then complement step from the new point
        w, b = w0.clone().requires_grad_(), b0.clone().requires_grad_()
        gw, gb = torch.autograd.grad(objectives(w, b)[0], (w, b))
        w1, b1 = (w0 - lr * gw).requires_grad_(), (b0 - lr * gb).requires_grad_()
        gw, gb = torch.autograd.grad(-objectives(w1, b1)[1], (w1, b1))
        alternating = torch.cat([(w1 - lr * gw).flatten(), (b1 - lr * gb).flatten()])
        # featspace: one step on the head's summed loss
        w, b = w0.clone().requires_grad_(), b0.clone().requires_grad_()
        loss = torch.func.functional_call(head, {"weight": w, "bias": b}, (x, LABELS)).loss
        gw, gb = torch.autograd.grad(loss, (w, b))
        summed = torch.cat([(w0 - lr * gw).flatten(), (b0 - lr * gb).flatten()])
        return (alternating - summed).norm().item()

    ratio = gap(1e-2) / gap(1e-3)
    assert 80 < ratio < 120, ratio


@pytest.mark.parametrize(
    "hparams, match",
    [(dict(lam=-1.0), "lam"), (dict(lam=float("inf")), "lam"), (dict(lam=True), "lam"),
     (dict(normalize="entropy"), "normalize"), (dict(normalize=None), "normalize")],
)
def test_hparam_validation(hparams, match):
    with pytest.raises(ValueError, match=match):
        heads.build("cot", D, C, **hparams)
