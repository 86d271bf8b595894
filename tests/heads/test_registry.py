"""Checks every registered head must pass; a head is tested here the moment it is registered.

Per-formula agreement with the papers lives in the family test files (test_<module>.py), each beside a
literal float64 transcription of its equations. This file holds the contract: shapes, predict/forward
agreement, gradcheck, edge cases, dtypes, and clear errors on bad input.
"""

from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck
from torch.func import functional_call

from featspace import heads
from featspace.heads.base import HEADS, HeadOutput

D, C = 6, 4  # C <= D + 1 so exact PEDCC exists; D > C so direct-sum complements are non-trivial
ALL = heads.names()


def make(name: str, d: int = D, c: int = C, dtype: torch.dtype = torch.float32, seed: int = 0):
    torch.manual_seed(seed)
    return heads.build(name, d, c).to(dtype)


def batch(b: int = 12, d: int = D, c: int = C, dtype=torch.float32, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, d, generator=g, dtype=dtype)
    y = torch.arange(b) % c  # every class present, several samples each
    return x, y


def test_registry_is_populated():
    expected = {
        "softmax", "bce", "arcface", "cosface", "sphereface", "lsoftmax", "combined_margin", "normface",
        "amc", "lace", "icv", "center", "pod", "nac", "cosine", "pedcc_loss", "directsum", "nca", "proto",
        "hasep",
    }
    missing = expected - set(ALL)
    assert not missing, f"heads not registered yet: {sorted(missing)}"


def test_unknown_name_lists_valid_ones():
    with pytest.raises(ValueError, match="softmax"):
        heads.build("no_such_head", D, C)


def test_names_are_sorted_and_the_registry_holds_them():
    assert ALL == sorted(ALL) == sorted(HEADS.names())
    assert all(heads.get_head_class(name).name == name for name in ALL)


def test_register_head_refuses_non_heads_and_taken_names():
    with pytest.raises(TypeError, match="Head subclass"):
        heads.register_head("test_not_a_head")(dict)

    class Impostor(heads.Head):
        """Claims a taken name."""

    with pytest.raises(ValueError, match="already registered"):
        heads.register_head("softmax")(Impostor)
    assert Impostor.name == "" and heads.get_head_class("softmax").__name__ == "SoftmaxHead"
    assert "test_not_a_head" not in HEADS


def test_fixed_arguments_are_not_hyperparameters():
    with pytest.raises(ValueError, match=r"hyperparameter\(s\) embedding_dim, num_classes for 'softmax'"):
        HEADS.build("softmax", embedding_dim=D, num_classes=C)
    assert "embedding_dim" not in heads.default_hparams("lace")


@pytest.mark.parametrize("name", ALL)
def test_unknown_hparam_lists_valid_ones(name):
    with pytest.raises(ValueError, match="valid"):
        heads.build(name, D, C, not_a_real_hparam=1)


@pytest.mark.parametrize("name", ALL)
def test_has_one_line_description(name):
    assert heads.describe(name).strip(), f"{name} needs a class docstring whose first line describes it"


@pytest.mark.parametrize("name", ALL)
def test_output_contract(name):
    head = make(name)
    x, y = batch()
    x.requires_grad_()
    out = head(x, y)
    assert isinstance(out, HeadOutput)
    assert out.loss.dim() == 0 and torch.isfinite(out.loss)
    assert out.logits.shape == (x.shape[0], C)
    assert out.parts, "parts must name the loss terms"
    for key, part in out.parts.items():
        assert isinstance(key, str) and part.dim() == 0 and torch.isfinite(part), key
    out.loss.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert any(p.grad is not None for p in head.parameters()) or not list(head.parameters())


@pytest.mark.parametrize("name", ALL)
def test_predict_agrees_with_forward_logits(name):
    head = make(name).eval()
    x, y = batch()
    with torch.no_grad():
        scores = head.predict(x)
        logits = head(x, y).logits
    assert scores.shape == (x.shape[0], C)
    assert torch.equal(scores.argmax(1), logits.argmax(1))


@pytest.mark.parametrize("name", ALL)
def test_start_epoch_is_callable(name):
    head = make(name)
    x, y = batch()
    x.requires_grad_()
    for epoch in (1, 2, 3):
        head.start_epoch(epoch)
        head(x, y).loss.backward()
    assert torch.isfinite(head(x, y).loss)


@pytest.mark.parametrize("name", ALL)
def test_gradcheck_float64(name):
    """Gradients w.r.t. the embeddings and every parameter agree with finite differences."""
    head = make(name, d=4, c=3, dtype=torch.float64).eval()
    x, y = batch(b=6, d=4, c=3, dtype=torch.float64, seed=3)
    names_ = [n for n, p in head.named_parameters() if p.requires_grad]
    params = tuple(dict(head.named_parameters())[n].detach().clone().requires_grad_() for n in names_)
    buffers = dict(head.named_buffers())

    def loss_fn(xx, *ps):
        return functional_call(head, ({**dict(zip(names_, ps)), **buffers},), (xx, y)).loss

    assert gradcheck(loss_fn, (x.clone().requires_grad_(), *params), eps=1e-6, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize(
    "case",
    ["single_sample_class", "all_labels_distinct", "batch_of_one", "zero_embedding", "one_class_only"],
)
def test_edge_cases_give_finite_loss_and_grads(name, case):
    head = make(name)
    x, y = batch()
    if case == "single_sample_class":
        y = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 2, 3])  # class 3 has one sample
    elif case == "all_labels_distinct":
        x, y = x[:C], torch.arange(C)
    elif case == "batch_of_one":
        x, y = x[:1], y[:1]
    elif case == "zero_embedding":
        x = x.clone()
        x[0] = 0.0
    elif case == "one_class_only":
        y = torch.zeros_like(y)
    x = x.clone().requires_grad_()
    out = head(x, y)
    assert torch.isfinite(out.loss), f"{name}/{case}: loss {out.loss}"
    out.loss.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all(), f"{name}/{case}: non-finite embedding grad"
    for pname, p in head.named_parameters():
        if p.grad is not None:
            assert torch.isfinite(p.grad).all(), f"{name}/{case}: non-finite grad of {pname}"


@pytest.mark.parametrize("name", ALL)
def test_float64_inputs_keep_float64(name):
    head = make(name, dtype=torch.float64)
    x, y = batch(dtype=torch.float64)
    out = head(x, y)
    assert out.loss.dtype == torch.float64
    assert all(p.dtype == torch.float64 for p in head.parameters())


@pytest.mark.parametrize("name", ALL)
def test_bf16_autocast_is_finite_and_close(name):
    head = make(name)
    x, y = batch()
    reference = head(x, y).loss.detach()
    x.requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = head(x, y)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    assert torch.isfinite(x.grad).all()
    assert all(p.dtype == torch.float32 for p in head.parameters()), "parameters must keep their dtype"
    assert torch.allclose(out.loss.float(), reference, rtol=5e-2, atol=5e-2), (out.loss, reference)


@pytest.mark.parametrize("name", ALL)
def test_state_dict_round_trip(name):
    a, b = make(name, seed=0).eval(), make(name, seed=1).eval()
    b.load_state_dict(a.state_dict())
    x, y = batch()
    assert torch.allclose(a(x, y).loss, b(x, y).loss)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize(
    "bad, match",
    [
        ("wrong_dim", "shape"),
        ("wrong_rank", "shape"),
        ("nan", "NaN"),
        ("inf", "NaN or Inf"),
        ("label_high", r"\[0, 3\]"),
        ("label_negative", r"\[0, 3\]"),
        ("label_length", "labels must have shape"),
        ("float_labels", "integer"),
        ("empty", "empty"),
    ],
)
def test_bad_input_raises_clear_value_error(name, bad, match):
    head = make(name)
    x, y = batch()
    if bad == "wrong_dim":
        x = torch.randn(12, D + 1)
    elif bad == "wrong_rank":
        x = x[None]
    elif bad == "nan":
        x[3, 2] = float("nan")
    elif bad == "inf":
        x[0, 0] = float("inf")
    elif bad == "label_high":
        y = y.clone()
        y[0] = C
    elif bad == "label_negative":
        y = y.clone()
        y[0] = -1
    elif bad == "label_length":
        y = y[:-1]
    elif bad == "float_labels":
        y = y.float()
    elif bad == "empty":
        x, y = x[:0], y[:0]
    with pytest.raises(ValueError, match=match):
        head(x, y)


@pytest.mark.parametrize("name", ALL)
def test_predict_rejects_bad_embeddings(name):
    head = make(name)
    with pytest.raises(ValueError, match="shape"):
        head.predict(torch.randn(3, D + 2))
    with pytest.raises(ValueError, match="NaN"):
        head.predict(torch.full((2, D), float("nan")))


@pytest.mark.parametrize("name", ALL)
def test_class_weights_use_linear_layout(name):
    head = make(name)
    weight = getattr(head, "weight", None)
    if isinstance(weight, torch.Tensor):
        assert weight.shape == (C, D), "class weights must be [num_classes, embedding_dim]"


@pytest.mark.parametrize("name", heads.names())
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_one_dtype_rule_embeddings_take_the_heads_dtype_outside_autocast(name, dtype):
    """Issue 17, item 12: 14 float32 heads raised "mat1 and mat2 must have the same dtype" for fp16/bf16/fp64
    embeddings while 7 upcast. Every head now computes in its own dtype (Head.as_head_dtype)."""
    head = make(name)
    x, y = batch()
    torch.manual_seed(0)
    reference = make(name)(x.to(dtype).float(), y)
    torch.manual_seed(0)
    out = head(x.to(dtype), y)
    assert out.loss.dtype == torch.float32 and out.logits.dtype == torch.float32
    torch.testing.assert_close(out.loss, reference.loss)
    assert head.predict(x.to(dtype)).dtype == torch.float32


@pytest.mark.parametrize("name", heads.names())
def test_finite_inputs_give_finite_losses_or_a_clear_error(name):
    """Issue 17, item 11: embeddings x1e19 gave NaN in nca, proto, directsum and inf in center, icv, lsoftmax.
    Embeddings are accepted up to a bound where every head's loss and gradients stay finite, and refused above
    it with a ValueError that says so."""
    from featspace.heads.base import max_embedding_magnitude

    head = make(name)
    x, y = batch()
    with pytest.raises(ValueError, match="where squared distances and weighted losses overflow"):
        head(x * 1e19, y)
    large = (x / x.abs().max() * 0.9 * max_embedding_magnitude(torch.float32, D)).requires_grad_()
    out = head(large, y)
    out.loss.backward()
    assert torch.isfinite(out.loss) and torch.isfinite(out.logits).all(), name
    assert torch.isfinite(large.grad).all() and all(torch.isfinite(p.grad).all() for p in head.parameters()
                                                   if p.grad is not None), name
    assert torch.isfinite(head.predict(large.detach())).all(), name


@pytest.mark.parametrize("name", heads.names())
def test_scales_and_loss_weights_are_bounded_where_they_stay_finite(name):
    """Issue 17, item 11: scale or lam = 1e308 passed validation and gave NaN/inf. They are bounded, and at the
    bound the loss is finite."""
    from featspace.heads import hparams

    bounded = {k: v for k, v in heads.default_hparams(name).items()
               if k in ("scale", "lam", "softmax_weight") and isinstance(v, (int, float)) and not isinstance(v, bool)}
    for key in bounded:
        with pytest.raises(ValueError, match=f"{key} must"):
            heads.build(name, D, C, **{key: 1e308})
        top = hparams.MAX_SCALE if key == "scale" else hparams.MAX_WEIGHT
        try:
            head = heads.build(name, D, C, **{key: top})
        except ValueError:  # a tighter bound of its own (amc's lam lies in [0, 1])
            continue
        x, y = batch()
        out = head(x.requires_grad_(), y)
        out.loss.backward()
        assert torch.isfinite(out.loss) and torch.isfinite(x.grad).all(), (name, key)
