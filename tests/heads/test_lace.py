"""lace and featspace.functional.ace_scores against literal float64 transcriptions of 000 eq. 3-4.

The transcriptions build the background covariance Σ_b = (WᵀW)⁻¹ with an explicit matrix inverse, invert it
again to get Σ_b⁻¹, and evaluate eq. 3 per sample and class with explicit loops, exactly as printed apart
from the misplaced square root (the printed denominator nests √((x−μ)ᵀΣ⁻¹(x−μ)) inside √(sᵀΣ⁻¹s ·); the
ACE statistic is the cosine √(sᵀΣ⁻¹s)·√((x−μ)ᵀΣ⁻¹(x−μ)), which is what eq. 4 and Section 3.1 use).
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import torch
from torch.autograd import gradcheck
from torch.func import functional_call
from torch.utils._python_dispatch import TorchDispatchMode

from featspace import heads
from featspace.functional import ace_scores

B, D, C = 7, 5, 4
LABELS = torch.tensor([0, 1, 2, 3, 0, 1, 1])


# ------------------------------------------------------------------------------ literal transcriptions
def literal_ace(x_n, s, mu, sigma_inv):
    """000 eq. 3 (square roots as intended): sᵀΣ⁻¹(x−μ) / (√(sᵀΣ⁻¹s) · √((x−μ)ᵀΣ⁻¹(x−μ)))."""
    centred = x_n - mu
    numerator = s @ sigma_inv @ centred
    return numerator / (torch.sqrt(s @ sigma_inv @ s) * torch.sqrt(centred @ sigma_inv @ centred))


def inverse_covariance_from_factor(W):
    """Σ_b⁻¹ the long way: Σ_b = (WᵀW)⁻¹ by an explicit inverse, then Σ_b⁻¹ = inv(Σ_b)."""
    sigma_b = torch.linalg.inv(W.T @ W)
    return torch.linalg.inv(sigma_b)


def literal_lace_loss(x, y, S, mus, sigma_invs, temperature=1.0):
    """000 eq. 4: mean_n −log( exp(D_n,y_n) / Σ_j exp(D_n,j) ), D_n,j = ACE(x_n, s_j; μ_j, Σ_j⁻¹) / T.

    ``mus[j]`` and ``sigma_invs[j]`` are the background of class j's detector (the same object for every j
    with the paper's global background)."""
    total = 0.0
    for n in range(x.shape[0]):
        scores = [literal_ace(x[n], S[j], mus[j], sigma_invs[j]) / temperature for j in range(S.shape[0])]
        denominator = sum(torch.exp(score) for score in scores)
        total = total - torch.log(torch.exp(scores[int(y[n])]) / denominator)
    return total / x.shape[0]


# ------------------------------------------------------------------------------------------ helpers
def random_factor(d, generator, count=None):
    shape = (count, d, d) if count else (d, d)
    return torch.eye(d, dtype=torch.float64) + 0.3 * torch.randn(*shape, generator=generator, dtype=torch.float64)


def make_head(seed=0, **hparams):
    """A float64 head with every parameter moved away from its initial value."""
    torch.manual_seed(seed)
    head = heads.build("lace", D, C, **hparams).double()
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        if head.background_mean is not None:
            head.background_mean.copy_(0.5 * torch.randn(head.background_mean.shape, generator=g, dtype=torch.float64))
        if head.whitening is not None:
            count = C if head.whitening.dim() == 3 else None
            head.whitening.copy_(random_factor(D, g, count))
    return head


def embeddings(seed=1, b=B):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, D, generator=g, dtype=torch.float64)


def literal_for_head(head, x, y):
    """Literal eq. 4 on detached copies of the head's parameters; returns (loss, leaf tensors by name)."""
    leaves = {n: p.detach().clone().requires_grad_() for n, p in head.named_parameters()}
    eye = torch.eye(D, dtype=torch.float64)
    zero = torch.zeros(D, dtype=torch.float64)
    mean, factor = leaves.get("background_mean"), leaves.get("whitening")
    mus, sigma_invs = [], []
    for j in range(C):
        mus.append(zero if mean is None else (mean[j] if mean.dim() == 2 else mean))
        if factor is None:
            sigma_invs.append(eye)
        else:
            sigma_invs.append(inverse_covariance_from_factor(factor[j] if factor.dim() == 3 else factor))
    temperature = torch.exp(leaves["log_temperature"]) if "log_temperature" in leaves else head.temperature
    return literal_lace_loss(x, y, leaves["signatures"], mus, sigma_invs, temperature), leaves


def assert_head_matches_literal(head, x=None, y=LABELS):
    x = embeddings() if x is None else x
    xr = x.detach().clone().requires_grad_()
    x = x.detach().clone().requires_grad_()
    out = head(x, y)
    ref, leaves = literal_for_head(head, xr, y)
    assert math.isclose(out.loss.item(), ref.item(), rel_tol=1e-10, abs_tol=1e-12), (out.loss.item(), ref.item())
    out.loss.backward()
    ref.backward()
    torch.testing.assert_close(x.grad, xr.grad, rtol=1e-8, atol=1e-10)
    for name, p in head.named_parameters():
        torch.testing.assert_close(p.grad, leaves[name].grad, rtol=1e-8, atol=1e-10, msg=f"gradient of {name}")


# ----------------------------------------------------------------------------------------- the tests
def test_ace_scores_match_eq3_with_explicit_inverse():
    """The fast form (WᵀW never formed, no inverse) equals eq. 3 with Σ_b built and inverted explicitly,
    values and gradients w.r.t. x, signatures, background_mean and whitening."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(B, D, generator=g, dtype=torch.float64, requires_grad=True)
    S = torch.randn(C, D, generator=g, dtype=torch.float64, requires_grad=True)
    mu = (0.5 * torch.randn(D, generator=g, dtype=torch.float64)).requires_grad_()
    W = random_factor(D, g).requires_grad_()
    weights = torch.randn(B, C, generator=g, dtype=torch.float64)  # a generic downstream gradient

    fast = ace_scores(x, S, mu, W)
    leaves = [t.detach().clone().requires_grad_() for t in (x, S, mu, W)]
    xr, Sr, mur, Wr = leaves
    sigma_inv = inverse_covariance_from_factor(Wr)
    literal = torch.stack([torch.stack([literal_ace(xr[n], Sr[c], mur, sigma_inv) for c in range(C)]) for n in range(B)])
    torch.testing.assert_close(fast, literal, rtol=1e-10, atol=1e-12)
    (fast * weights).sum().backward()
    (literal * weights).sum().backward()
    for mine, theirs, name in zip((x, S, mu, W), leaves, ("x", "signatures", "background_mean", "whitening")):
        torch.testing.assert_close(mine.grad, theirs.grad, rtol=1e-8, atol=1e-10, msg=name)


def test_ace_scores_depend_on_whitening_only_through_inverse_covariance():
    """cos(QW(x−μ), QWs) = cos(W(x−μ), Ws) for orthogonal Q: only Σ_b⁻¹ = WᵀW matters, so learning the
    factor W directly spans the same models as the paper's D^{-1/2}Uᵀ from an SVD."""
    g = torch.Generator().manual_seed(6)
    x, S = embeddings(), torch.randn(C, D, generator=g, dtype=torch.float64)
    mu, W = torch.randn(D, generator=g, dtype=torch.float64), random_factor(D, g)
    Q, _ = torch.linalg.qr(torch.randn(D, D, generator=g, dtype=torch.float64))
    torch.testing.assert_close(ace_scores(x, S, mu, Q @ W), ace_scores(x, S, mu, W))
    # the symmetric square root of Σ⁻¹ is another factor of it
    eigenvalues, vectors = torch.linalg.eigh(W.T @ W)
    root = vectors @ torch.diag(eigenvalues.sqrt()) @ vectors.T
    torch.testing.assert_close(ace_scores(x, S, mu, root), ace_scores(x, S, mu, W))


def test_lace_loss_and_gradients_match_eq4():
    head = make_head()
    assert head.background_mean.shape == (D,) and head.whitening.shape == (D, D)
    assert_head_matches_literal(head)


@pytest.mark.parametrize("use_mean, use_covariance", [(False, False), (False, True), (True, False), (True, True)])
def test_table4_ablation_switches(use_mean, use_covariance):
    """Table 4: a switched-off component is absent (μ_b fixed at 0, W fixed at I), not learned."""
    head = make_head(use_mean=use_mean, use_covariance=use_covariance)
    names = {n for n, _ in head.named_parameters()}
    assert ("background_mean" in names) == use_mean
    assert ("whitening" in names) == use_covariance
    assert_head_matches_literal(head)


@pytest.mark.parametrize("use_mean, use_covariance", [(True, True), (False, True), (True, False)])
def test_per_class_background_matches_literal_loop(use_mean, use_covariance):
    """per_class_background: class c is scored as cos(W_c(x − μ_c), W_c s_c), its own one-vs-all ACE."""
    head = make_head(per_class_background=True, use_mean=use_mean, use_covariance=use_covariance)
    if use_mean:
        assert head.background_mean.shape == (C, D)
    if use_covariance:
        assert head.whitening.shape == (C, D, D)
    assert_head_matches_literal(head)


def test_per_class_background_with_equal_backgrounds_equals_global():
    glob = make_head()
    per_class = heads.build("lace", D, C, per_class_background=True).double()
    with torch.no_grad():
        per_class.signatures.copy_(glob.signatures)
        per_class.background_mean.copy_(glob.background_mean.expand(C, D))
        per_class.whitening.copy_(glob.whitening.expand(C, D, D))
    x = embeddings()
    torch.testing.assert_close(per_class.predict(x), glob.predict(x))


def test_fixed_and_learned_temperature():
    fixed = make_head(temperature=0.25)
    assert "log_temperature" not in dict(fixed.named_parameters())
    assert_head_matches_literal(fixed)
    learned = make_head(temperature=0.25, learn_temperature=True)
    with torch.no_grad():
        learned.log_temperature.fill_(math.log(0.4))  # away from its start, so the gradient is generic
    assert learned.current_temperature() == pytest.approx(0.4)
    assert_head_matches_literal(learned)


def test_initial_state_is_the_plain_cosine_softmax():
    """W = I and μ_b = 0 at start: the scores are plain cosines between x and the signatures."""
    torch.manual_seed(0)
    head = heads.build("lace", D, C)
    x = embeddings().float()
    expected = torch.nn.functional.normalize(x, dim=1) @ torch.nn.functional.normalize(head.signatures, dim=1).T
    torch.testing.assert_close(head.predict(x), expected)


class _RecordOps(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.add(str(func.overloadpacket.__name__))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("per_class", [False, True])
def test_training_step_has_no_svd_eigendecomposition_or_inverse(per_class):
    torch.manual_seed(0)
    head = heads.build("lace", D, C, per_class_background=per_class, learn_temperature=True)
    x = torch.randn(B, D, requires_grad=True)
    with _RecordOps() as recorder:
        head(x, LABELS).loss.backward()
    forbidden = ("svd", "eig", "inv", "solve", "cholesky", "pinv", "lstsq", "qr")
    found = sorted(op for op in recorder.ops if any(word in op for word in forbidden))
    assert not found, found
    assert "mm" in recorder.ops or "addmm" in recorder.ops or "bmm" in recorder.ops  # the mode did see the step


def _load_reference():
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "lace_svd_reference.py"
    spec = importlib.util.spec_from_file_location("lace_svd_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.LaceSVDReference


def test_matches_the_authors_svd_parameterisation():
    """With whitening = B⁻¹ (or the authors' own D^{-1/2}Uᵀ) the head reproduces the authors' SVD-per-step
    LACE layer: same loss, same gradient w.r.t. the embeddings."""
    torch.manual_seed(3)
    reference = _load_reference()(D, C).double()
    x = embeddings()
    for factor in (reference.equivalent_whitening(), reference.whitening_from_svd().detach()):
        head = heads.build("lace", D, C).double()
        with torch.no_grad():
            head.signatures.copy_(reference.signatures)
            head.background_mean.copy_(reference.background_mean)
            head.whitening.copy_(factor)
        xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
        loss_ref, loss_head = reference(xa, LABELS), head(xb, LABELS).loss
        torch.testing.assert_close(loss_head, loss_ref, rtol=1e-9, atol=1e-12)
        loss_ref.backward()
        loss_head.backward()
        torch.testing.assert_close(xb.grad, xa.grad, rtol=1e-7, atol=1e-10)


def test_feature_space_and_learned_centroids():
    head = make_head()
    x = embeddings()
    torch.testing.assert_close(head.feature_space(x), (x - head.background_mean) @ head.whitening.T)
    centroids = head.learned_centroids()
    assert centroids.shape == (C, D)
    torch.testing.assert_close(centroids.norm(dim=1), torch.ones(C, dtype=torch.float64))
    z = head.feature_space(x)
    nearest_raw = torch.cdist(z, centroids).argmin(1)
    nearest_normalised = torch.cdist(torch.nn.functional.normalize(z, dim=1), centroids).argmin(1)
    predicted = head.predict(x).argmax(1)
    assert torch.equal(nearest_raw, predicted) and torch.equal(nearest_normalised, predicted)
    per_class = make_head(per_class_background=True)
    assert per_class.learned_centroids() is None
    assert torch.equal(per_class.feature_space(x), x)


@pytest.mark.parametrize(
    "hparams",
    [dict(per_class_background=True), dict(per_class_background=True, use_mean=False, learn_temperature=True),
     dict(use_covariance=False, learn_temperature=True)],
)
def test_variants_gradcheck_and_zero_embedding(hparams):
    """The registry's contract checks run on the defaults only; the switchable variants get them here."""
    head = make_head(**hparams).eval()
    x = embeddings(b=5)
    y = torch.tensor([0, 1, 2, 3, 0])
    names = [n for n, _ in head.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_() for _, p in head.named_parameters())

    def loss_fn(xx, *ps):
        return functional_call(head, dict(zip(names, ps)), (xx, y)).loss

    assert gradcheck(loss_fn, (x.clone().requires_grad_(), *params), eps=1e-6, atol=1e-5, rtol=1e-4)
    z = torch.zeros(3, D, dtype=torch.float64, requires_grad=True)
    out = head(z, y[:3])
    out.loss.backward()
    assert torch.isfinite(out.loss) and torch.isfinite(z.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in head.parameters() if p.grad is not None)


@pytest.mark.parametrize(
    "hparams, match",
    [
        (dict(use_mean=1), "use_mean"),
        (dict(use_covariance="yes"), "use_covariance"),
        (dict(per_class_background=None), "per_class_background"),
        (dict(learn_temperature=0), "learn_temperature"),
        (dict(temperature=0.0), "temperature"),
        (dict(temperature=-1.0), "temperature"),
        (dict(temperature=float("inf")), "temperature"),
        (dict(temperature=True), "temperature"),
    ],
)
def test_hparam_validation(hparams, match):
    with pytest.raises(ValueError, match=match):
        heads.build("lace", D, C, **hparams)


def test_ace_scores_rejects_mismatched_shapes():
    x, S = torch.randn(3, D), torch.randn(C, D)
    with pytest.raises(ValueError, match="background_mean"):
        ace_scores(x, S, torch.zeros(D + 1))
    with pytest.raises(ValueError, match="whitening"):
        ace_scores(x, S, None, torch.eye(D + 1))
    with pytest.raises(ValueError, match="signatures"):
        ace_scores(x, torch.randn(C, D + 1))
