"""pod, nac, cosine and pedcc_loss against literal float64 transcriptions of 002 eq. 2-4, 9, 11, 16-19, 21-24."""

from __future__ import annotations

import math

import pytest
import torch
import torch.distributed as dist

import featspace.distributed as fs_distributed
from featspace import heads, pedcc
from featspace.heads import pod as pod_module

EPS = 1e-12  # eq. 10-11


# ------------------------------------------------------------------------- literal transcriptions
def norm(v):
    return torch.sqrt(sum(v[k] * v[k] for k in range(v.shape[0])))


def dot(u, v):
    return sum(u[k] * v[k] for k in range(u.shape[0]))


def reference_cosine_loss(x, y, P):
    """eq. 9 with eq. 11: (1/N) Σ_i (1 − x_i·pedcc_{y_i} / (‖x_i‖ + ε))²."""
    total = 0.0
    for i in range(x.shape[0]):
        cos = dot(x[i], P[int(y[i])]) / (norm(x[i]) + EPS)
        total = total + (1 - cos) ** 2
    return total / x.shape[0]


def reference_nac(x, y, P, delta):
    """eq. 16-17 as printed: cos_Na = cos θ_y / (1 + δ/‖x‖), L = (1/N) Σ_i (1 − cos_Na)²."""
    total = 0.0
    for i in range(x.shape[0]):
        cos = dot(x[i], P[int(y[i])]) / norm(x[i])
        cos_na = cos / (1 + delta / norm(x[i]))
        total = total + (1 - cos_na) ** 2
    return total / x.shape[0]


def reference_nac_code(x, y, P, delta):
    """The authors' NaCLoss: x·pedcc_y / ‖[x, δ]‖, i.e. / √(‖x‖² + δ²)."""
    total = 0.0
    for i in range(x.shape[0]):
        extended = torch.cat([x[i], torch.tensor([delta], dtype=x.dtype)])
        total = total + (1 - dot(x[i], P[int(y[i])]) / norm(extended)) ** 2
    return total / x.shape[0]


def reference_sc(x, y, P):
    """eq. 18-19: X the normalised features as columns, R = (X − X_pedcc)(X − X_pedcc)ᵀ/(B − 1), Σ_{i≠j} R_ij²."""
    B, n = x.shape
    D = [[x[b, k] / norm(x[b]) - P[int(y[b]), k] for b in range(B)] for k in range(n)]  # n × B, columns = samples
    total = 0.0
    for i in range(n):
        for j in range(n):
            if i != j:
                R_ij = sum(D[i][b] * D[j][b] for b in range(B)) / (B - 1)
                total = total + R_ij**2
    return total


def reference_pedcc_loss(x, y, P, s, m, lam, n):
    """eq. 2-4: AM-softmax on the PEDCC cosines + λ·ⁿ√(1/(2N) Σ‖x̃_i − pedcc_{y_i}‖²)."""
    N, C = x.shape[0], P.shape[0]
    am = 0.0
    mse = 0.0
    for i in range(N):
        yi = int(y[i])
        cos = [dot(x[i], P[j]) / norm(x[i]) for j in range(C)]
        numerator = torch.exp(s * (cos[yi] - m))
        denominator = numerator + sum(torch.exp(s * cos[j]) for j in range(C) if j != yi)
        am = am - torch.log(numerator / denominator)
        x_unit = x[i] / norm(x[i])
        mse = mse + sum((x_unit[k] - P[yi, k]) ** 2 for k in range(x.shape[1]))
    am = am / N
    mse = mse / (2 * N)
    return am + lam * mse ** (1.0 / n)


# ------------------------------------------------------------------------------------- helpers
def make_batch(b=9, d=5, c=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, d, generator=g, dtype=torch.float64)
    y = torch.randint(0, c, (b,), generator=g)
    y[:c] = torch.arange(c)
    return x, y


def compare(head, reference, x, y):
    """Loss and embedding gradient of the head vs the literal reference (PEDCC heads have no parameters)."""
    xh = x.clone().requires_grad_()
    out = head(xh, y)
    out.loss.backward()
    xr = x.clone().requires_grad_()
    ref = reference(xr, y, head.centroids.double())
    ref.backward()
    torch.testing.assert_close(out.loss, ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(xh.grad, xr.grad, rtol=1e-9, atol=1e-12)
    return out


def build(name, d=5, c=4, **hp):
    return heads.build(name, d, c, **hp).double()


# ---------------------------------------------------------------------------------- the losses
def test_cosine_matches_eq9():
    head = build("cosine")
    x, y = make_batch()
    out = compare(head, reference_cosine_loss, x, y)
    assert set(out.parts) == {"cosine"}


@pytest.mark.parametrize("epoch_delta", [1, 3])
def test_nac_matches_eq16_17(epoch_delta):
    head = build("nac", alpha=0.3)
    x, y = make_batch(seed=1)
    head.start_epoch(1)
    head.train()
    head(x * 2.0, y)  # an "epoch" of training features: M = mean ‖2x‖
    head.start_epoch(epoch_delta + 1)
    expected_delta = 0.3 * (epoch_delta + 1) * float((2.0 * x).norm(dim=1).mean())
    assert float(head.delta) == pytest.approx(expected_delta, rel=1e-6)
    head.eval()
    compare(head, lambda xx, yy, P: reference_nac(xx, yy, P, float(head.delta)), x, y)


def test_nac_code_variant_matches_the_authors_nacloss():
    head = build("nac", variant="code", alpha=0.5)
    x, y = make_batch(seed=2)
    head.eval()
    assert float(head.delta) == pytest.approx(0.05)  # the code starts δ at 0.05
    compare(head, lambda xx, yy, P: reference_nac_code(xx, yy, P, 0.05), x, y)


def test_pod_matches_eq20_with_sc_eq18_19():
    head = build("pod", alpha=0.2, lam=0.7).eval()
    x, y = make_batch(b=7, d=5, seed=3)
    delta = float(head.delta)

    def reference(xx, yy, P):
        return reference_nac(xx, yy, P, delta) + 0.7 * reference_sc(xx, yy, P)

    out = compare(head, reference, x, y)
    assert set(out.parts) == {"nac", "sc"}
    torch.testing.assert_close(out.parts["sc"], reference_sc(x, y, head.centroids.double()))


def test_pod_code_variant_divides_sc_by_d_minus_1():
    head = build("pod", d=6, variant="code").eval()
    x, y = make_batch(b=8, d=6, seed=4)

    def reference(xx, yy, P):
        return reference_nac_code(xx, yy, P, 0.05) + reference_sc(xx, yy, P) / (6 - 1)

    compare(head, reference, x, y)


@pytest.mark.parametrize("s, m, lam, n", [(15.0, 0.5, 1.0, 1.0), (4.0, 0.2, 0.3, 2.0)])
def test_pedcc_loss_matches_eq2_4(s, m, lam, n):
    head = build("pedcc_loss", scale=s, margin=m, lam=lam, mse_root=n)
    x, y = make_batch(seed=5)
    out = compare(head, lambda xx, yy, P: reference_pedcc_loss(xx, yy, P, s, m, lam, n), x, y)
    assert set(out.parts) == {"am_softmax", "mse"}
    torch.testing.assert_close(out.logits, head.predict(x))


# ------------------------------------------------------------------------- fast forms and identities
@pytest.mark.parametrize("b, d", [(4, 7), (9, 3), (5, 5)])  # B < d uses the B×B Gram form, B >= d the d×d one
def test_self_correlation_fast_form_matches_literal_covariance(b, d):
    g = torch.Generator().manual_seed(b * 10 + d)
    x = torch.randn(b, d, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (b,), generator=g)
    P = pedcc.generate(3, d, seed=1).double()
    fast = pod_module.self_correlation_loss(x / x.norm(dim=1, keepdim=True), P[y])
    torch.testing.assert_close(fast, reference_sc(x, y, P), rtol=1e-10, atol=1e-14)
    R = (x / x.norm(dim=1, keepdim=True) - P[y]).T @ (x / x.norm(dim=1, keepdim=True) - P[y]) / (b - 1)
    torch.testing.assert_close(fast, (R**2).sum() - (R.diagonal() ** 2).sum(), rtol=1e-10, atol=1e-14)
    halved = pod_module.self_correlation_loss(x / x.norm(dim=1, keepdim=True), P[y], divide_by_dim=True)
    torch.testing.assert_close(halved, fast / (d - 1))


def test_self_correlation_batch_of_one_is_zero_with_a_gradient():
    x = torch.randn(1, 4, requires_grad=True)
    loss = pod_module.self_correlation_loss(x, torch.zeros(1, 4))
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(x.grad, torch.zeros(1, 4))


def test_nac_with_alpha_zero_is_the_cosine_loss():
    x, y = make_batch(seed=6)
    nac = build("nac", alpha=0.0).eval()
    cosine = build("cosine").eval()
    torch.testing.assert_close(nac(x, y).loss, cosine(x, y).loss, rtol=1e-12, atol=0)


def test_pod_with_lam_zero_is_nac():
    x, y = make_batch(seed=7)
    torch.testing.assert_close(build("pod", lam=0.0).eval()(x, y).loss, build("nac").eval()(x, y).loss)


def test_nac_eq12_and_eq16_forms_agree():
    x, y = make_batch(seed=8)
    P = pedcc.generate(4, 5, seed=0).double()
    delta = 0.37
    eq12 = pod_module.norm_adaptive_cosine(x, P[y], delta, eps=0.0)
    cos = (x * P[y]).sum(1) / x.norm(dim=1)
    torch.testing.assert_close(eq12, cos / (1 + delta / x.norm(dim=1)))


def test_mse_term_is_one_minus_cosine_eq6_8():
    head = build("pedcc_loss", lam=1.0, margin=0.0)
    x, y = make_batch(seed=9)
    out = head(x, y)
    cos = head.predict(x).gather(1, y[:, None]).squeeze(1) / head.scale
    torch.testing.assert_close(out.parts["mse"], (1 - cos).mean())


def test_scores_are_cosines_and_classify_as_eq21():
    for name in ("pod", "nac", "cosine"):
        head = build(name)
        x, y = make_batch(seed=10)
        scores = head.predict(x)
        torch.testing.assert_close(head(x, y).logits, scores)
        P = head.centroids.double()
        torch.testing.assert_close(scores, x @ P.T / x.norm(dim=1, keepdim=True))
        assert torch.equal(scores.argmax(1), (x @ P.T).argmax(1))  # eq. 21 = eq. 24
        assert head.learned_centroids() is head.centroids
    x, y = make_batch(seed=10)
    head = build("pedcc_loss", scale=7.0)
    torch.testing.assert_close(head.predict(x), 7.0 * x @ head.centroids.double().T / x.norm(dim=1, keepdim=True))
    torch.testing.assert_close(head(x, y).logits, head.predict(x))


# ----------------------------------------------------------------------------------- δ schedule
def test_delta_schedule_text_across_epochs():
    head = heads.build("pod", 5, 4, alpha=0.01)
    head.train()
    assert float(head.delta) == pytest.approx(0.01 * 1 * 0.05)  # before any epoch: M = 0.05
    head.start_epoch(1)
    assert float(head.delta) == pytest.approx(0.01 * 1 * 0.05)
    batches = [torch.randn(6, 5) * scale for scale in (1.0, 3.0, 0.5)]
    labels = torch.arange(6) % 4
    for xb in batches:
        head(xb, labels)
    head.eval()
    head(torch.randn(6, 5) * 100, labels)  # evaluation does not count
    epoch1_mean = float(torch.cat(batches).norm(dim=1).mean())
    assert float(head.epoch_norm_sum) == pytest.approx(float(torch.cat(batches).norm(dim=1).sum()), rel=1e-6)
    assert int(head.epoch_norm_count) == 18
    head.train()
    head.start_epoch(2)
    assert float(head.mean_norm) == pytest.approx(epoch1_mean, rel=1e-6)
    assert float(head.delta) == pytest.approx(0.01 * 2 * epoch1_mean, rel=1e-6)
    assert int(head.epoch_norm_count) == 0 and float(head.epoch_norm_sum) == 0.0
    head.start_epoch(2)  # a repeated call (no samples seen) keeps M
    assert float(head.delta) == pytest.approx(0.01 * 2 * epoch1_mean, rel=1e-6)
    epoch2 = torch.randn(10, 5) * 2
    head(epoch2, torch.arange(10) % 4)
    head.start_epoch(3)
    assert float(head.delta) == pytest.approx(0.01 * 3 * float(epoch2.norm(dim=1).mean()), rel=1e-6)


def test_delta_schedule_code_variant():
    head = heads.build("nac", 5, 4, alpha=0.1, variant="code")
    head.start_epoch(1)
    assert float(head.delta) == pytest.approx(0.05)
    x = torch.randn(8, 5)
    head.train()
    head(x, torch.arange(8) % 4)
    logit_norm = float((x @ head.centroids.T).norm(dim=1).mean())  # the code averages ‖x·PEDCCᵀ‖
    head.start_epoch(2)
    assert float(head.delta) == pytest.approx(0.1 * 1 * logit_norm, rel=1e-6)
    head(x, torch.arange(8) % 4)
    head.start_epoch(3)
    assert float(head.delta) == pytest.approx(0.1 * 2 * logit_norm, rel=1e-6)


def test_schedule_survives_a_checkpoint():
    a = heads.build("pod", 5, 4)
    a.start_epoch(1)
    a(torch.randn(6, 5) * 4, torch.arange(6) % 4)
    b = heads.build("pod", 5, 4)
    b.load_state_dict(a.state_dict())
    a.start_epoch(2)
    b.start_epoch(2)  # a resumed run continues with the statistics of the interrupted epoch
    assert float(a.delta) == float(b.delta) > 0.01 * 2 * 0.05


def test_epoch_norm_statistics_can_be_all_reduced(monkeypatch):
    head = heads.build("nac", 5, 4)
    x = torch.randn(6, 5)
    head(x, torch.arange(6) % 4)
    total, count = head.epoch_norm_statistics()
    assert total is head.epoch_norm_sum and count is head.epoch_norm_count
    # Two processes that saw the same data: all_reduce doubles both, and M (their ratio) is unchanged.
    calls = []

    def fake_all_reduce(tensor):
        calls.append(tensor)
        tensor.mul_(2)

    monkeypatch.setattr(fs_distributed, "is_distributed", lambda: True)
    monkeypatch.setattr(dist, "all_reduce", fake_all_reduce)
    head.start_epoch(2)
    assert len(calls) == 2
    assert float(head.mean_norm) == pytest.approx(float(x.norm(dim=1).mean()), rel=1e-6)


def test_half_precision_cast_keeps_statistics_in_float32():
    head = heads.build("pod", 5, 4).to(torch.bfloat16)
    assert head.centroids.dtype == torch.bfloat16
    assert head.epoch_norm_sum.dtype == head.mean_norm.dtype == head.delta.dtype == torch.float32
    assert head.epoch_norm_count.dtype == torch.int64


def test_start_epoch_rejects_bad_epochs():
    head = heads.build("nac", 5, 4)
    for bad in (0, -1, 1.0, True):
        with pytest.raises(ValueError, match="epoch"):
            head.start_epoch(bad)


def test_gathered_batch_feeds_sc(monkeypatch):
    """SC is computed on gather_batch's output (the global batch under DDP), NaC on the local batch."""
    head = build("pod").eval()
    x, y = make_batch(b=6, seed=11)
    extra_x, extra_y = make_batch(b=5, seed=12)
    monkeypatch.setattr(head, "gather_batch", lambda xx, yy: (torch.cat([xx, extra_x]), torch.cat([yy, extra_y])))
    out = head(x, y)
    P = head.centroids.double()
    torch.testing.assert_close(out.parts["sc"], reference_sc(torch.cat([x, extra_x]), torch.cat([y, extra_y]), P))
    torch.testing.assert_close(out.parts["nac"], reference_nac(x, y, P, float(head.delta)))


# ------------------------------------------------------------------------------ hparams and PEDCC
def test_centroids_are_a_fixed_pedcc_buffer():
    head = heads.build("pod", 8, 5, pedcc_seed=3)
    assert "centroids" in dict(head.named_buffers()) and not list(head.parameters())
    torch.testing.assert_close(head.centroids, pedcc.generate(5, 8, seed=3))
    assert not torch.equal(head.centroids, heads.build("pod", 8, 5, pedcc_seed=4).centroids)
    assert "centroids" in head.state_dict()


def test_too_many_classes_need_the_repulsion_option():
    with pytest.raises(ValueError, match="pedcc_method='repulsion'"):
        heads.build("nac", 2, 5)
    head = heads.build("nac", 2, 5, pedcc_method="repulsion")
    cos = head.centroids @ head.centroids.T
    assert float(cos.fill_diagonal_(-1).max()) == pytest.approx(math.cos(2 * math.pi / 5), abs=2e-3)


@pytest.mark.parametrize(
    "name, hp, match",
    [
        ("pod", {"alpha": -0.1}, "alpha"),
        ("pod", {"alpha": float("nan")}, "alpha"),
        ("pod", {"lam": -1.0}, "lam"),
        ("pod", {"variant": "paper"}, "variant"),
        ("nac", {"variant": "Code"}, "variant"),
        ("cosine", {"pedcc_method": "physical"}, "pedcc_method"),
        ("cosine", {"pedcc_seed": "1"}, "pedcc_seed"),
        ("pedcc_loss", {"scale": 0.0}, "scale"),
        ("pedcc_loss", {"margin": -0.5}, "margin"),
        ("pedcc_loss", {"mse_root": 0.5}, "mse_root"),
        ("pedcc_loss", {"lam": float("inf")}, "lam"),
    ],
)
def test_bad_hparams_raise(name, hp, match):
    with pytest.raises(ValueError, match=match):
        heads.build(name, 5, 4, **hp)


def test_hparams_read_back():
    head = heads.build("pod", 5, 4, alpha=0.02, lam=0.5, variant="code", pedcc_seed=2)
    assert heads.hparams_of(head) == {"alpha": 0.02, "lam": 0.5, "variant": "code", "pedcc_seed": 2,
                                      "pedcc_method": "exact"}
    assert heads.default_hparams("pedcc_loss") == {"scale": 15.0, "margin": 0.5, "lam": 1.0, "mse_root": 1.0,
                                                   "pedcc_seed": 0, "pedcc_method": "exact"}


def test_bf16_autocast_keeps_the_cosine_loss_precise():
    """Near convergence 1 − cos is ~1e-3; bf16 cosines would round the squared loss to nothing or noise."""
    head = heads.build("cosine", 16, 4)
    y = torch.arange(8) % 4
    x = head.centroids[y] * 5 + 0.01 * torch.randn(8, 16, generator=torch.Generator().manual_seed(0))
    reference = head(x, y).loss
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = head(x, y).loss
    assert low.dtype == torch.float32
    torch.testing.assert_close(low, reference, rtol=1e-5, atol=1e-9)
