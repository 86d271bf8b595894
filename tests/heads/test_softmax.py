"""softmax and bce against literal float64 transcriptions of 003 eq. (1) and eq. (2)."""

from __future__ import annotations

import math

import pytest
import torch

from featspace import heads


def reference_sce(x, y, W, b):
    """003 eq. 1, per sample: −log( exp(w_yᵀx + b_y) / Σ_c exp(w_cᵀx + b_c) ), averaged over the batch."""
    total = 0.0
    for i in range(x.shape[0]):
        z = [sum(W[c, k] * x[i, k] for k in range(x.shape[1])) + b[c] for c in range(W.shape[0])]
        denominator = sum(torch.exp(zc) for zc in z)
        total = total - torch.log(torch.exp(z[int(y[i])]) / denominator)
    return total / x.shape[0]


def reference_bce(x, y, W, b):
    """003 eq. 2: −log(e^{z_y}/(1+e^{z_y})) − Σ_{c≠y} log(1/(1+e^{z_c})), averaged over the batch."""
    total = 0.0
    for i in range(x.shape[0]):
        z = [sum(W[c, k] * x[i, k] for k in range(x.shape[1])) + b[c] for c in range(W.shape[0])]
        yi = int(y[i])
        term = -torch.log(torch.exp(z[yi]) / (1 + torch.exp(z[yi])))
        for c in range(W.shape[0]):
            if c != yi:
                term = term - torch.log(1 / (1 + torch.exp(z[c])))
        total = total + term
    return total / x.shape[0]


def _compare(name, reference):
    torch.manual_seed(0)
    head = heads.build(name, 5, 4).double()
    x = torch.randn(7, 5, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 1, 2, 3, 0, 1, 1])
    out = head(x, y)
    W = head.weight.detach().clone().requires_grad_()
    b = head.bias.detach().clone().requires_grad_()
    xr = x.detach().clone().requires_grad_()
    ref = reference(xr, y, W, b)
    assert math.isclose(out.loss.item(), ref.item(), rel_tol=1e-12)
    out.loss.backward()
    ref.backward()
    torch.testing.assert_close(x.grad, xr.grad)
    torch.testing.assert_close(head.weight.grad, W.grad)
    torch.testing.assert_close(head.bias.grad, b.grad)


def test_softmax_matches_eq1():
    _compare("softmax", reference_sce)


def test_bce_matches_eq2():
    _compare("bce", reference_bce)


@pytest.mark.parametrize("name", ["softmax", "bce"])
@pytest.mark.parametrize("bias", ["False", "abc", float("nan"), [1.0], 0])
def test_bias_must_be_a_real_bool(name, bias):
    """Issue 17, item 9: bias='False' turned the bias on (a non-empty string is truthy)."""
    with pytest.raises(ValueError, match="bias must be a bool"):
        heads.build(name, 4, 3, bias=bias)
