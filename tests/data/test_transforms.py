"""Batched augmentation against a literal per-image transcription (torchvision's pad + crop + flip),
and the reproducibility of its counter-based randomness."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF

from featspace.data import AUGMENT_POLICIES, augment_batch, augmentation_keys, derive_seed, normalize


def images(b=16, c=3, h=10, w=12, seed=0):
    return torch.randint(0, 256, (b, c, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def reference(batch, keys, policy, pad):
    """One image at a time with torchvision's functional ops: pad with zeros, crop at (dy, dx), flip."""
    out = []
    h, w = batch.shape[-2:]
    for image, key in zip(batch, keys):
        key = int(key)
        dy, dx, flip = (key & 0xFFFF) % (2 * pad + 1), ((key >> 16) & 0xFFFF) % (2 * pad + 1), (key >> 32) & 1
        if policy == "none":
            out.append(image)
            continue
        image = TF.crop(TF.pad(image, [pad], fill=0), dy, dx, h, w)
        if policy == "crop_flip" and flip:
            image = TF.horizontal_flip(image)
        out.append(image)
    return torch.stack(out)


@pytest.mark.parametrize("policy", AUGMENT_POLICIES)
@pytest.mark.parametrize("pad", [4, 2])
def test_matches_per_image_torchvision(policy, pad):
    batch = images()
    keys = augmentation_keys(seed=1, epoch=2, indices=range(100, 116))
    out = augment_batch(batch, keys, policy, pad=pad)
    assert out.shape == batch.shape and out.dtype == torch.uint8
    assert torch.equal(out, reference(batch, keys, policy, pad))


def test_offsets_and_flips_cover_their_range_uniformly():
    keys = augmentation_keys(seed=0, epoch=0, indices=range(9000))
    dy = (keys & np.uint64(0xFFFF)) % np.uint64(9)
    flips = (keys >> np.uint64(32)) & np.uint64(1)
    counts = np.bincount(dy.astype(np.int64), minlength=9)
    assert counts.min() > 850 and counts.max() < 1150  # 1000 expected per offset
    assert 0.45 < flips.mean() < 0.55


def test_keys_depend_on_seed_epoch_and_index_only():
    a = augmentation_keys(0, 1, [5, 6, 7])
    assert np.array_equal(a, augmentation_keys(0, 1, torch.tensor([5, 6, 7])))
    assert np.array_equal(a[1:], augmentation_keys(0, 1, [6, 7]))  # batch composition does not matter
    assert not np.array_equal(a, augmentation_keys(0, 2, [5, 6, 7]))
    assert not np.array_equal(a, augmentation_keys(1, 1, [5, 6, 7]))
    assert len(set(augmentation_keys(0, 0, range(1000)).tolist())) == 1000
    assert derive_seed(0, 1) != derive_seed(1, 0) and 0 <= derive_seed(3, 4) < 2**63


def test_normalize():
    batch = images(c=2)
    out = normalize(batch, (0.5, 0.25), (0.2, 0.1))
    expected = (batch.double() / 255 - torch.tensor([0.5, 0.25]).view(1, 2, 1, 1).double()) / torch.tensor(
        [0.2, 0.1]).view(1, 2, 1, 1).double()
    assert out.dtype == torch.float32
    assert torch.allclose(out.double(), expected, atol=1e-5)
    with pytest.raises(ValueError, match="channels"):
        normalize(batch, (0.5,), (0.2,))


def test_bad_policy_and_key_count():
    with pytest.raises(ValueError, match="valid: none, crop, crop_flip"):
        augment_batch(images(), augmentation_keys(0, 0, range(16)), "rotate")
    with pytest.raises(ValueError, match="keys"):
        augment_batch(images(), augmentation_keys(0, 0, range(3)), "crop")
