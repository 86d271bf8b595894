"""icv and center against literal float64 transcriptions of 001 eq. 3, 5, 7, 8 and Wen et al. (2016) eq. 2-4."""

from __future__ import annotations

import math

import pytest
import torch

from featspace import heads
from featspace.heads import centroid as centroid_module


# ------------------------------------------------------------------------- literal transcriptions
def softmax_information(x, y, W, b):
    """001 eq. 1-3: −(1/N_b) Σ_j log p_{y_j}, p = softmax(W x + b)."""
    total = 0.0
    for i in range(x.shape[0]):
        s = [sum(W[c, k] * x[i, k] for k in range(x.shape[1])) + b[c] for c in range(W.shape[0])]
        total = total - torch.log(torch.exp(s[int(y[i])]) / sum(torch.exp(sc) for sc in s))
    return total / x.shape[0]


def squared_distance(u, v):
    return sum((u[k] - v[k]) ** 2 for k in range(u.shape[0]))


def reference_icv(x, y, W, b, C, lam, normalize):
    """L_1 = L_0 + λ·L_var, L_var = (1/N_b) Σ_j ‖x_j − C_{y_j}‖² (001 eq. 5); unit-length x for "Norm."."""
    if normalize:
        x = torch.stack([x[i] / torch.sqrt(sum(x[i, k] ** 2 for k in range(x.shape[1]))) for i in range(x.shape[0])])
    variance = sum(squared_distance(x[i], C[int(y[i])]) for i in range(x.shape[0])) / x.shape[0]
    return softmax_information(x, y, W, b) + lam * variance


def reference_center(x, y, W, b, centers, lam):
    """Wen et al. eq. 2-3 divided by the batch size: L_S/m + λ·½ Σ_i ‖x_i − c_{y_i}‖² / m."""
    center = sum(0.5 * squared_distance(x[i], centers[int(y[i])]) for i in range(x.shape[0])) / x.shape[0]
    return softmax_information(x, y, W, b) + lam * center


def reference_update_wen(centers, x, y, alpha):
    """Wen et al. eq. 4: Δc_j = Σ_i δ(y_i=j)(c_j − x_i) / (1 + Σ_i δ(y_i=j)); c_j ← c_j − α Δc_j."""
    new = centers.clone()
    for j in range(centers.shape[0]):
        numerator = torch.zeros(centers.shape[1], dtype=centers.dtype)
        count = 0
        for i in range(x.shape[0]):
            if int(y[i]) == j:
                numerator = numerator + (centers[j] - x[i])
                count += 1
        new[j] = centers[j] - alpha * numerator / (1 + count)
    return new


def reference_update_batch_mean(centers, x, y, alpha):
    """001 eq. 7: for n_k ≠ 0, C_k := (1 − α) C_k + (α / n_k) Σ_{j ∈ J'_k} x_j."""
    new = centers.clone()
    for k in range(centers.shape[0]):
        members = [x[j] for j in range(x.shape[0]) if int(y[j]) == k]
        if members:
            new[k] = (1 - alpha) * centers[k] + alpha / len(members) * sum(members)
    return new


def reference_update_per_sample(centers, x, y, alpha):
    """001 eq. 8, one sample at a time in batch order: C_{y_j} := (1 − α) C_{y_j} + α x_j."""
    new = centers.clone()
    for j in range(x.shape[0]):
        k = int(y[j])
        new[k] = (1 - alpha) * new[k] + alpha * x[j]
    return new


# ------------------------------------------------------------------------------------- helpers
def make_batch(b=9, d=5, c=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, d, generator=g, dtype=torch.float64) * 2
    y = torch.randint(0, c, (b,), generator=g)
    y[:c] = torch.arange(c)
    return x, y


# ---------------------------------------------------------------------------------------- icv
@pytest.mark.parametrize("lam, normalize", [(1.0, False), (0.05, False), (0.5, True)])
def test_icv_matches_eq5(lam, normalize):
    torch.manual_seed(0)
    head = heads.build("icv", 5, 4, lam=lam, normalize=normalize).double()
    x, y = make_batch()
    xh = x.clone().requires_grad_()
    out = head(xh, y)
    out.loss.backward()
    xr = x.clone().requires_grad_()
    W, b, C = (head.get_parameter(n).detach().clone().requires_grad_() for n in ("weight", "bias", "centroids"))
    ref = reference_icv(xr, y, W, b, C, lam, normalize)
    ref.backward()
    torch.testing.assert_close(out.loss, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(xh.grad, xr.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(head.weight.grad, W.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(head.bias.grad, b.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(head.centroids.grad, C.grad, rtol=1e-10, atol=1e-12)
    assert set(out.parts) == {"ce", "variance"}


def test_icv_centroid_gradient_is_the_hadamard_layer_rule():
    """∂L/∂C_k = −(2λ/N_b) Σ_{j: y_j = k} (x_j − C_k): an optimizer step pulls C_k to the class mean."""
    torch.manual_seed(1)
    head = heads.build("icv", 5, 4, lam=0.7).double()
    x, y = make_batch(seed=1)
    head(x, y).loss.backward()
    for k in range(4):
        expected = -2 * 0.7 / x.shape[0] * (x[y == k] - head.centroids[k].detach()).sum(0)
        torch.testing.assert_close(head.centroids.grad[k], expected)
    # Many plain gradient steps on the variance term alone converge to the class means (001 eq. 6).
    centroids = torch.zeros(4, 5, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.SGD([centroids], lr=0.3)
    for _ in range(300):
        optimizer.zero_grad()
        ((x - centroids[y]) ** 2).sum(1).mean().backward()
        optimizer.step()
    means = torch.stack([x[y == k].mean(0) for k in range(4)])
    torch.testing.assert_close(centroids.detach(), means, atol=1e-8, rtol=0)


def test_icv_normalize_uses_unit_embeddings_everywhere():
    torch.manual_seed(2)
    head = heads.build("icv", 5, 4, normalize=True).double()
    x, y = make_batch(seed=2)
    unit = x / x.norm(dim=1, keepdim=True)
    torch.testing.assert_close(head.feature_space(x), unit)
    torch.testing.assert_close(head.predict(x), unit @ head.weight.T + head.bias)
    torch.testing.assert_close(head.predict(3 * x), head.predict(x))  # scale-free
    torch.testing.assert_close(head(x, y).logits, head.predict(x))
    plain = heads.build("icv", 5, 4).double()
    torch.testing.assert_close(plain.feature_space(x), x)


def test_icv_exposes_its_centroids_and_optimizer_sees_them():
    head = heads.build("icv", 5, 4)
    assert isinstance(head.centroids, torch.nn.Parameter) and head.centroids.shape == (4, 5)
    assert any(p is head.centroids for p in head.parameters())
    assert torch.equal(head.learned_centroids(), head.centroids.detach())
    # λ = 0 (cross entropy alone): no loss reads the centroids, so none are offered for NCC or plots
    assert heads.build("icv", 5, 4, lam=0.0).learned_centroids() is None


# -------------------------------------------------------------------------------------- center
@pytest.mark.parametrize("update", ["wen", "batch_mean", "per_sample"])
def test_center_loss_and_gradients_match_wen(update):
    torch.manual_seed(3)
    head = heads.build("center", 5, 4, lam=0.2, update=update).double().eval()
    x, y = make_batch(seed=3)
    xh = x.clone().requires_grad_()
    out = head(xh, y)
    out.loss.backward()
    xr = x.clone().requires_grad_()
    W, b = (head.get_parameter(n).detach().clone().requires_grad_() for n in ("weight", "bias"))
    ref = reference_center(xr, y, W, b, head.centroids.clone(), 0.2)
    ref.backward()
    torch.testing.assert_close(out.loss, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(xh.grad, xr.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(head.weight.grad, W.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(head.bias.grad, b.grad, rtol=1e-10, atol=1e-12)
    assert set(out.parts) == {"ce", "center"}
    assert not head.centroids.requires_grad


REFERENCE_UPDATES = {
    "wen": reference_update_wen,
    "batch_mean": reference_update_batch_mean,
    "per_sample": reference_update_per_sample,
}


@pytest.mark.parametrize("update", ["wen", "batch_mean", "per_sample"])
@pytest.mark.parametrize("alpha", [0.5, 0.1, 1.0])
def test_update_rules_match_literal_loops(update, alpha):
    x, y = make_batch(b=11, seed=4)
    y[5:] = 2  # one class with many samples in an order that matters for eq. 8; class 3 has one
    centers = torch.randn(5, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(5))  # class 4 absent
    rule = {"wen": centroid_module.center_update_wen, "batch_mean": centroid_module.center_update_batch_mean,
            "per_sample": centroid_module.center_update_per_sample}[update]
    new = rule(centers, x, y, alpha)
    torch.testing.assert_close(new, REFERENCE_UPDATES[update](centers, x, y, alpha), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(new[4], centers[4])  # absent classes do not move


@pytest.mark.parametrize("update", ["wen", "batch_mean", "per_sample"])
def test_center_updates_when_training_after_the_loss(update):
    torch.manual_seed(6)
    head = heads.build("center", 5, 4, lam=0.3, alpha=0.4, update=update).double()
    x, y = make_batch(seed=6)
    before = head.centroids.clone()
    W, b = head.weight.detach(), head.bias.detach()
    loss = head(x, y).loss
    # The loss used the centroids from before the step (Wen et al., Algorithm 1), then the buffer moved.
    torch.testing.assert_close(loss, reference_center(x, y, W, b, before, 0.3), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(head.centroids, REFERENCE_UPDATES[update](before, x, y, 0.4), rtol=1e-12, atol=1e-12)
    head.eval()
    frozen = head.centroids.clone()
    head(x, y)
    assert torch.equal(head.centroids, frozen)


def test_center_update_uses_the_gathered_batch(monkeypatch):
    torch.manual_seed(7)
    head = heads.build("center", 5, 4, alpha=0.5).double()
    x, y = make_batch(b=6, seed=7)
    other_x, other_y = make_batch(b=5, seed=8)
    monkeypatch.setattr(head, "gather_batch", lambda xx, yy: (torch.cat([xx, other_x]), torch.cat([yy, other_y])))
    before = head.centroids.clone()
    head(x, y)
    expected = reference_update_wen(before, torch.cat([x, other_x]), torch.cat([y, other_y]), 0.5)
    torch.testing.assert_close(head.centroids, expected)


def test_center_centroids_are_a_checkpointed_buffer():
    head = heads.build("center", 5, 4)
    assert "centroids" in dict(head.named_buffers()) and "centroids" in head.state_dict()
    assert all(p is not head.centroids for p in head.parameters())
    assert head.learned_centroids() is head.centroids
    bound = math.sqrt(3 / 5)
    assert float(head.centroids.abs().max()) <= bound


def test_center_under_bf16_autocast_updates_in_float32():
    head = heads.build("center", 6, 4, update="batch_mean")
    x = torch.randn(8, 6)
    y = torch.arange(8) % 4
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = head(x, y)
    assert out.loss.dtype == torch.float32 and head.centroids.dtype == torch.float32
    assert torch.isfinite(head.centroids).all()


# ------------------------------------------------------------------------------------- hparams
@pytest.mark.parametrize(
    "name, hp, match",
    [
        ("icv", {"lam": -1.0}, "lam"),
        ("icv", {"lam": float("nan")}, "lam"),
        ("icv", {"normalize": "yes"}, "normalize"),
        ("center", {"lam": -0.1}, "lam"),
        ("center", {"alpha": 1.5}, "alpha"),
        ("center", {"alpha": -0.5}, "alpha"),
        ("center", {"update": "ema"}, "update"),
    ],
)
def test_bad_hparams_raise(name, hp, match):
    with pytest.raises(ValueError, match=match):
        heads.build(name, 5, 4, **hp)


def test_hparams_and_defaults():
    assert heads.default_hparams("icv") == {"lam": 1.0, "normalize": False}
    assert heads.default_hparams("center") == {"lam": 0.003, "alpha": 0.5, "update": "wen"}
    head = heads.build("center", 5, 4, lam=0.1, alpha=0.2, update="per_sample")
    assert heads.hparams_of(head) == {"lam": 0.1, "alpha": 0.2, "update": "per_sample"}
