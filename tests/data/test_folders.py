"""Streamed image folders: the imagefolder / tinyimagenet / imagenet loaders on tiny trees written in their real
layouts, the split rule, corrupt files, the per-image policies, the streaming statistics and the DataModule over
files; and a backbone's ``data_config`` taking over the pipeline."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from featspace import data
from featspace.data import DataModule, FolderBundle
from featspace.data.module import ImageFileDataset, stream_stats
from tests.data import formats


@pytest.fixture
def tree(tmp_path):
    formats.write_mixed_folder(tmp_path, {"train": {"ant": 6, "bee": 6}, "val": {"ant": 2, "bee": 2},
                                          "test": {"ant": 2, "bee": 3}})
    return tmp_path


def first_line(err) -> str:
    text = str(err.value)
    assert "\n" not in text, text
    return text


def test_train_val_test_roles_and_labels(tree):
    bundle = data.load("imagefolder", data_dir=tree)
    assert isinstance(bundle, FolderBundle)
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (12, 4, 5)
    assert bundle.train.labels.tolist() == [0] * 6 + [1] * 6 and bundle.test.labels.tolist() == [0, 0, 1, 1, 1]
    assert all("/val/" in p for p in bundle.val.paths) and all("/test/" in p for p in bundle.test.paths)
    dm = DataModule(bundle, batch_size=4, image_size=16, val_fraction=0.5)
    # val/ beside test/ is the validation split: the whole of train/ trains, val_fraction is not used
    assert len(dm.train_set) == 12 and len(dm.val_set) == 4 and dm.has_validation and dm.streaming
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 3, 16, 16) and x.dtype == torch.float32 and y.dtype == torch.int64
    test = list(dm.test_dataloader())
    assert torch.equal(torch.cat([b[1] for b in test]), bundle.test.labels)
    assert dm.split_paths("test") == bundle.test.paths and dm.image_size == (16, 16)
    info = dm.model_info()
    assert info["resize"] == "shorter_side" and info["image_size"] == [16, 16] and info["crop_pct"] == 1.0


def test_without_a_test_folder_val_is_the_test_split_and_validation_a_holdout(tmp_path):
    formats.write_mixed_folder(tmp_path, {"train": {"a": 10, "b": 10}, "val": {"a": 2, "b": 2}})
    bundle = data.load("imagefolder", data_dir=tmp_path)
    assert bundle.val is None and len(bundle.test) == 4 and all("/val/" in p for p in bundle.test.paths)
    dm = DataModule(bundle, batch_size=4, val_fraction=0.1)
    assert len(dm.val_set) == 2 and len(dm.train_set) == 18


def test_streamed_statistics_are_the_test_views_statistics(tree):
    bundle = data.load("imagefolder", data_dir=tree)
    view = data.eval_transform(8)
    mean, std = stream_stats(bundle.train, torch.arange(12), view, samples=1000, batch_size=5)
    images = torch.stack([view(Image.open(p).convert("RGB")) for p in bundle.train.paths]).double() / 255
    assert torch.allclose(torch.tensor(mean, dtype=torch.float64), images.mean(dim=(0, 2, 3)), atol=1e-6)
    assert torch.allclose(torch.tensor(std, dtype=torch.float64), images.std(dim=(0, 2, 3), unbiased=False),
                          atol=1e-6)
    # a bounded subset: the same seed picks the same images; the module computes them at its own size
    assert stream_stats(bundle.train, torch.arange(12), view, samples=5) == stream_stats(
        bundle.train, torch.arange(12), view, samples=5)
    dm = DataModule(bundle, batch_size=4, image_size=8, stats_samples=1000)
    assert dm.mean == pytest.approx(mean) and dm.std == pytest.approx(std)


def test_eval_view_keeps_the_aspect_ratio():
    image = torch.zeros(20, 40, 3, dtype=torch.uint8)
    image[:, :10] = 255  # a white band on the left quarter: outside the central square
    out = data.eval_transform(10)(Image.fromarray(image.numpy()))
    assert out.shape == (3, 10, 10) and int(out.max()) < 64  # at most the antialiasing's bleed at the edge
    stretched = torch.nn.functional.interpolate(image.permute(2, 0, 1)[None].float(), size=(10, 10))
    assert float(stretched.max()) == 255.0
    assert data.eval_transform(8, crop_pct=0.5)(Image.fromarray(image.numpy())).shape == (3, 8, 8)


@pytest.mark.parametrize("policy", data.POLICIES)
def test_every_policy_streams_reproducibly(tree, policy):
    bundle = data.load("imagefolder", data_dir=tree)
    a = DataModule(bundle, batch_size=6, image_size=12, augment=policy, seed=1, normalization=((0.5,) * 3, (0.25,) * 3))
    b = DataModule(bundle, batch_size=6, image_size=12, augment=policy, seed=1, normalization=((0.5,) * 3, (0.25,) * 3))
    assert a.policy == policy
    first = [x for x, _ in a.train_dataloader()]
    assert first[0].shape == (6, 3, 12, 12)
    assert all(torch.equal(u, v) for u, v in zip(first, [x for x, _ in b.train_dataloader()]))
    if policy != "none":
        a.set_epoch(1)
        assert not all(torch.equal(u, v) for u, v in zip(first, [x for x, _ in a.train_dataloader()]))


def test_a_worker_gives_the_batches_of_the_main_process(tree):
    bundle = data.load("imagefolder", data_dir=tree)
    common = dict(batch_size=4, image_size=12, augment="imagenet", seed=2, normalization=((0.0,) * 3, (1.0,) * 3))
    single, pooled = DataModule(bundle, **common), DataModule(bundle, num_workers=1, **common)
    a = [x for x, _ in single.train_dataloader()]
    b = [x for x, _ in pooled.train_dataloader()]
    assert len(a) == len(b) and all(torch.equal(u, v) for u, v in zip(a, b))


def test_augment_true_false_and_unknown_policies(tree, tmp_path):
    bundle = data.load("imagefolder", data_dir=tree)
    stats = ((0.5,) * 3, (0.5,) * 3)
    assert DataModule(bundle, batch_size=4, normalization=stats).policy == "crop_flip"
    assert DataModule(bundle, batch_size=4, normalization=stats, augment=False).policy == "none"
    with pytest.raises(ValueError, match="augment must be true, false or one of none, crop, crop_flip, imagenet, "
                                         "randaugment, got 'mixup'") as info:
        DataModule(bundle, batch_size=4, normalization=stats, augment="mixup")
    first_line(info)
    with pytest.raises(ValueError, match="image_size must be a positive int"):
        DataModule(bundle, batch_size=4, normalization=stats, image_size=0)


def test_in_memory_datasets_take_every_policy_and_a_new_size():
    bundle = data.load("digits")
    dm = DataModule(bundle, batch_size=16, augment="randaugment", image_size=12)
    x, _ = next(iter(dm.train_dataloader()))
    assert x.shape == (16, 1, 12, 12) and dm.image_size == (12, 12)
    again = DataModule(bundle, batch_size=16, augment="randaugment", image_size=12)
    assert torch.equal(x, next(iter(again.train_dataloader()))[0])
    test_x, _ = next(iter(dm.test_dataloader()))
    assert test_x.shape == (16, 1, 12, 12)
    crop = DataModule(bundle, batch_size=16, augment="crop")
    assert crop.train_set.augment == "crop" and crop.image_size == (8, 8)  # crop alone, no flip


# ---------------------------------------------------------------------------------------------- bad files


def test_a_corrupt_file_stops_the_load_naming_it(tree):
    bad = tree / "train" / "bee" / "broken.jpg"
    bad.write_bytes(b"this is not a JPEG")
    with pytest.raises(data.CorruptImageError) as info:
        data.load("imagefolder", data_dir=tree)
    assert first_line(info).startswith(f"{bad}: ") and "skip_corrupt" in str(info.value)


def test_skip_corrupt_leaves_bad_and_non_image_files_out(tree):
    broken = tree / "train" / "bee" / "broken.jpg"
    broken.write_bytes(b"this is not a JPEG")
    notes = tree / "test" / "ant" / "notes.txt"
    notes.write_text("labels checked by hand")
    (tree / "train" / "ant" / ".DS_Store").write_bytes(b"\0")  # hidden: ignored
    with pytest.raises(data.CorruptImageError, match=r"broken.jpg: UnidentifiedImageError: cannot identify image "
                                                     r"file; remove it, or set skip_corrupt: true"):
        data.load("imagefolder", data_dir=tree)
    bundle = data.load("imagefolder", data_dir=tree, skip_corrupt=True)
    assert sorted(p for p, _ in bundle.skipped) == sorted([str(broken), str(notes)])
    assert len(bundle.train) == 12 and str(broken) not in bundle.train.paths


def test_a_file_that_fails_only_when_decoded_is_named_by_the_loader(tree):
    path = tree / "train" / "ant" / "0.png"
    path.write_bytes(path.read_bytes()[:60])  # header intact, pixels gone
    bundle = data.load("imagefolder", data_dir=tree, verify=False)
    dataset = ImageFileDataset(bundle.train, (0.0,) * 3, (1.0,) * 3, transform=data.eval_transform(8))
    with pytest.raises(data.CorruptImageError, match=f"{path}: not a readable image"):
        dataset.__getitems__([0])


def test_missing_folders_and_bad_options_are_one_line_errors(tmp_path):
    with pytest.raises(data.DatasetNotFoundError, match="has no train/ folder") as info:
        data.load("imagefolder", data_dir=tmp_path)
    first_line(info)
    formats.write_mixed_folder(tmp_path, {"train": {"a": 2, "b": 2}})
    with pytest.raises(data.DatasetNotFoundError, match="has no test/ or val/ folder") as info:
        data.load("imagefolder", data_dir=tmp_path)
    first_line(info)
    formats.write_mixed_folder(tmp_path, {"test": {"a": 1, "zebra": 1}})
    with pytest.raises(data.DatasetNotFoundError, match="classes not in .*zebra"):
        data.load("imagefolder", data_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown dataset option.*colour.*valid options: .*verify"):
        data.load("imagefolder", data_dir=tmp_path, colour=True)
    with pytest.raises(ValueError, match="classes = 5 but .* holds only 2 class folders") as info:
        data.load("imagefolder", data_dir=tmp_path, classes=5)
    first_line(info)
    with pytest.raises(ValueError, match="may not set root"):
        data.load("imagefolder", data_dir=tmp_path, root=1)


# ---------------------------------------------------------------------------------------------- releases


def test_tinyimagenet_in_its_release_layout(tmp_path):
    wnids = ["n02085620", "n01443537", "n01629819"]
    formats.write_tinyimagenet(tmp_path, wnids, n_train=3, n_val=2)
    bundle = data.load("tinyimagenet", data_dir=tmp_path)
    assert bundle.class_names == ["word37", "word19", "word20"]  # sorted wnids, named from words.txt
    assert (len(bundle.train), len(bundle.test), bundle.val) == (9, 6, None)
    assert bundle.image_size == 64 and bundle.augment == "crop_flip"
    assert bundle.train.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    # val/ is the test split, labelled by val_annotations.txt (written in reverse class order)
    for path, label in zip(bundle.test.paths, bundle.test.labels.tolist()):
        assert int(torch.tensor(list(Image.open(path).getdata())[0][0])) // 30 == label
    two = data.load("tinyimagenet", data_dir=tmp_path, classes=2)
    assert two.num_classes == 2 and len(two.test) == 4 and set(two.test.labels.tolist()) == {0, 1}
    with pytest.raises(ValueError, match="classes = 4 but .*wnids.txt holds only 3"):
        data.load("tinyimagenet", data_dir=tmp_path, classes=4)
    (tmp_path / "val" / "val_annotations.txt").unlink()
    with pytest.raises(data.DatasetNotFoundError, match="no val/val_annotations.txt") as info:
        data.load("tinyimagenet", data_dir=tmp_path)
    first_line(info)


def test_imagenet_n_takes_the_first_classes_in_sorted_order(tmp_path):
    wnids = ["n01530575", "n01440764", "n01443537", "n01484850"]
    formats.write_imagenet(tmp_path, wnids, n_train=2, n_val=1)
    bundle = data.load("imagenet", data_dir=tmp_path, classes=3)
    assert bundle.class_names == ["n01440764", "n01443537", "n01484850"]
    assert (len(bundle.train), len(bundle.test)) == (6, 3) and bundle.val is None
    assert bundle.augment == "imagenet" and bundle.crop_pct == 0.875 and bundle.image_size == 224
    dm = DataModule(bundle, batch_size=2, image_size=32, val_fraction=0.0)
    x, _ = next(iter(dm.test_dataloader()))
    assert x.shape == (2, 3, 32, 32)
    with pytest.raises(ValueError, match="classes = 9 but .* holds only 4 class folders"):
        data.load("imagenet", data_dir=tmp_path, classes=9)


# ---------------------------------------------------------------------------------------------- data_config


def test_a_backbone_data_config_replaces_the_dataset_statistics(tree):
    from featspace import models
    from featspace.config import TrainConfig
    from featspace.models.backbones import BACKBONES, Backbone
    from featspace.train.parts import build_parts

    built = []

    @models.register_backbone("test_pretrained", description="a tiny CNN with a pretrained-style data_config")
    def pretrained(in_channels, embedding_dim, image_size: int = 32):
        built.append(image_size)
        trunk = torch.nn.Sequential(torch.nn.Conv2d(in_channels, 4, 3), torch.nn.AdaptiveAvgPool2d(1),
                                    torch.nn.Flatten())
        model = Backbone("test_pretrained", trunk, in_channels, 4, embedding_dim)
        model.data_config = {"mean": (0.1, 0.2, 0.3), "std": (0.5, 0.6, 0.7), "input_size": 20,
                             "interpolation": "bicubic", "crop_pct": 0.9}
        return model

    try:
        config = TrainConfig(dataset="imagefolder", data_dir=str(tree), backbone="test_pretrained", batch_size=4,
                             embedding_dim=8)
        dm, backbone, _ = build_parts(config)
        assert dm.mean == (0.1, 0.2, 0.3) and dm.std == (0.5, 0.6, 0.7)
        assert dm.image_size == (20, 20) and dm.interpolation == "bicubic" and dm.crop_pct == 0.9
        assert built == [32, 20]  # built at the dataset's side, then again at the side its data_config asks for
        assert next(iter(dm.test_dataloader()))[0].shape[-2:] == (20, 20)
        dm, _, _ = build_parts(TrainConfig(**{**config.to_dict(), "image_size": 24}))
        assert dm.image_size == (24, 24) and dm.mean == (0.1, 0.2, 0.3)  # an explicit image_size wins
        gray, _, _ = build_parts(TrainConfig(backbone="test_pretrained", batch_size=4))  # digits: 1 channel
        assert gray.mean == pytest.approx((0.2,)) and gray.image_size == (20, 20)
    finally:
        BACKBONES.unregister("test_pretrained")
