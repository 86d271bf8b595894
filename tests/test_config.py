"""TrainConfig, recipes and key=value overrides."""

from __future__ import annotations

import pytest

from featspace.config import TrainConfig, apply_overrides, describe_recipe, load_recipe, recipe_names
from featspace.train.module import lr_factor


def test_every_shipped_recipe_loads_and_describes_itself():
    names = recipe_names()
    for expected in ("icv-fashion", "lace-cifar10", "lace-fashion", "pod-cifar10", "pod-fashion",
                     "hasep-cifar10", "hasep-fashion", "digits-demo"):
        assert expected in names
    for name in names:
        config = load_recipe(name)
        assert config.recipe == name
        assert describe_recipe(name)


def test_paper_recipes_hold_the_papers_settings():
    pod = load_recipe("pod-cifar10")
    assert (pod.optimizer, pod.lr, pod.momentum, pod.weight_decay, pod.max_epochs) == ("sgd", 0.1, 0.9, 5e-4, 100)
    assert pod.milestones == [30, 60, 90] and pod.embedding_dim == 256 and pod.backbone == "resnet50_cifar"
    hasep = load_recipe("hasep-cifar10")
    assert hasep.max_steps == 64000 and hasep.milestones == [32000, 48000] and hasep.batch_size == 128
    lace = load_recipe("lace-cifar10")
    assert lace.early_stopping_patience == 10 and lace.max_epochs == 300 and lace.val_fraction == 0.1
    icv = load_recipe("icv-fashion")
    assert (icv.optimizer, icv.lr, icv.batch_size, icv.max_epochs, icv.embedding_dim) == ("adam", 1e-3, 256, 20, 2)
    # 002 Sec. 4 and Table 3: Tiny ImageNet at 64 px, ImageNet(100) at 224 px, both with 512-d features
    tiny, inet = load_recipe("pod-tinyimagenet"), load_recipe("pod-imagenet100")
    for recipe in (tiny, inet):
        assert (recipe.head, recipe.backbone, recipe.embedding_dim, recipe.lr, recipe.momentum) == (
            "pod", "resnet50", 512, 0.1, 0.9)
        assert recipe.milestones == [30, 60, 90] and recipe.max_epochs == 100 and recipe.gamma == 0.1
    assert (tiny.dataset, tiny.image_size, tiny.weight_decay, tiny.batch_size, tiny.augment) == (
        "tinyimagenet", 64, 5e-4, 128, "crop_flip")
    assert (inet.dataset, inet.dataset_params, inet.image_size, inet.weight_decay, inet.batch_size, inet.augment) == (
        "imagenet", {"classes": 100}, 224, 1e-4, 96, "imagenet")


def test_new_data_fields_keep_existing_run_identities():
    """image_size, skip_corrupt, dataset_params and a string augment are new; their defaults (and augment: true /
    false) leave every existing cell hash as it was."""
    from featspace.config import cell_hash

    base = load_recipe("pod-cifar10")
    assert cell_hash(base) == cell_hash({k: v for k, v in base.to_dict().items()
                                         if k not in ("image_size", "skip_corrupt", "dataset_params")})
    assert cell_hash(load_recipe("pod-cifar10", ["augment=crop_flip"])) != cell_hash(base)


def test_overrides_parse_yaml_values_and_nested_keys():
    config = load_recipe("icv-fashion", ["lr=1e-2", "head_params.lam=0.5", "milestones=[3, 6]", "embedding_dim=4",
                                         "schedule=multistep"])
    assert config.lr == 0.01 and isinstance(config.lr, float)
    assert config.head_params == {"lam": 0.5, "normalize": False}
    assert config.milestones == [3, 6] and config.embedding_dim == 4


def test_overrides_do_not_mutate_the_input():
    values = {"head_params": {"lam": 1.0}}
    apply_overrides(values, ["head_params.lam=2"])
    assert values == {"head_params": {"lam": 1.0}}


@pytest.mark.parametrize("override, match", [
    ("no_such_field=1", "unknown config field"),
    ("optimizer=rmsprop", "optimizer"),
    ("lr=-1", "lr must"),
    ("lr=.inf", "lr must be a finite real number"),
    ("weight_decay=-1", "weight_decay must lie in"),
    ("gradient_clip=-1", "gradient_clip must lie in"),
    ("milestones=[30, -1]", "milestones must be an int >= 0"),
    ("augment=notabool", "augment must be true .* or one of none, crop, crop_flip, imagenet, randaugment"),
    ("augment=1", "augment must be true"),
    ("image_size=0", "image_size must be an int >= 1"),
    ("image_size=big", "image_size must be"),
    ("skip_corrupt=maybe", "skip_corrupt must be a bool"),
    ("dataset_params=[1]", "dataset_params must be a mapping"),
    ("dataset_params.image_size=64", "dataset_params may not set image_size"),
    ("tsne=maybe", "tsne must be a bool"),
    ("momentum=abc", "momentum must be a finite real number"),
    ("val_fraction=", "val_fraction must be a finite real number"),
    ("data_dir=[1]", "data_dir must be a non-empty string"),
    ("devices=0", "devices must be a count"),
    ("devices=abc", "devices must be a count"),
    ("precision=fp8", "precision must be one of"),
    ("head_params=[1]", "head_params must be a mapping"),
    ("batch_size=0", "batch_size"),
    ("val_fraction=1.5", "val_fraction"),
    ("novalue", "key=value"),
    ("milestones=[a]", "milestones"),
])
def test_bad_overrides_raise_value_error(override, match):
    with pytest.raises(ValueError, match=match):
        load_recipe("digits-demo", [override])


def test_unknown_recipe_lists_shipped_ones():
    with pytest.raises(ValueError, match="icv-fashion"):
        load_recipe("no-such-recipe")


def test_recipe_from_a_yaml_path(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("head: arcface\nmax_epochs: 3\n")
    config = load_recipe(str(path))
    assert config.head == "arcface" and config.max_epochs == 3 and config.recipe == "mine"


def test_lr_schedule_warmup_multistep_and_cosine():
    config = TrainConfig(schedule="multistep", milestones=[2, 4], gamma=0.1, warmup_epochs=1, max_epochs=6)
    factors = [lr_factor(s, config=config, steps_per_epoch=10, total_steps=60) for s in range(60)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert factors[15] == 1.0 and factors[25] == pytest.approx(0.1) and factors[45] == pytest.approx(0.01)
    steps = TrainConfig(schedule="multistep", milestones=[32, 48], max_steps=64)
    assert lr_factor(31, config=steps, steps_per_epoch=5, total_steps=64) == 1.0
    assert lr_factor(32, config=steps, steps_per_epoch=5, total_steps=64) == pytest.approx(0.1)
    cosine = TrainConfig(schedule="cosine", max_epochs=2)
    assert lr_factor(0, config=cosine, steps_per_epoch=10, total_steps=20) == pytest.approx(1.0)
    assert lr_factor(20, config=cosine, steps_per_epoch=10, total_steps=20) == pytest.approx(0.0)


BILLION_LAUGHS = "\n".join(["a: &a [x, x, x, x, x, x, x, x, x]"]
                           + [f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]" for i in range(8)]
                           + ["notes: *i"])


def test_a_recipe_of_nested_aliases_is_refused_before_it_expands(tmp_path):
    """Issue 17, item 6: a few hundred bytes of nested aliases expand to 9^9 items; the loader refuses aliases."""
    path = tmp_path / "bomb.yaml"
    path.write_text(BILLION_LAUGHS, encoding="utf-8")
    assert path.stat().st_size < 600
    with pytest.raises(ValueError, match="aliases .* are not allowed"):
        load_recipe(str(path))


def test_yaml_that_is_code_or_too_large_is_one_clear_error(tmp_path, capsys):
    from featspace.cli import main

    with pytest.raises(ValueError, match="cannot read override"):
        apply_overrides({}, ["notes=!!python/object/apply:os.system [echo hi]"])
    big = tmp_path / "big.yaml"
    big.write_text("notes: '" + "x" * (1 << 20) + "'\n", encoding="utf-8")
    with pytest.raises(ValueError, match="larger than 1024 KiB"):
        load_recipe(str(big))
    assert main(["train", str(tmp_path / "big.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "larger than" in err


def test_result_files_follow_the_umask_and_are_synced(tmp_path):
    """Issue 17, item 14: atomic writes made every result file 0600 whatever the umask."""
    import os

    from featspace.io import atomic_path, write_json

    previous = os.umask(0o022)
    try:
        write_json(tmp_path / "m.json", {"a": 1})
        with atomic_path(tmp_path / "x.bin") as tmp:
            tmp.write_bytes(b"x")
    finally:
        os.umask(previous)
    assert (tmp_path / "m.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "x.bin").stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "x.bin"]


def test_every_config_field_has_a_check():
    """Issue 17, item 9: every field's type and range is validated in one place."""
    import dataclasses

    from featspace.config import _FIELD_CHECKS

    assert set(_FIELD_CHECKS) == {f.name for f in dataclasses.fields(TrainConfig)}
    TrainConfig().validate()
    for name in ("devices=2", "devices=auto", "devices=-1", "devices=0,1", "precision=bf16-mixed", "lr=1"):
        load_recipe("digits-demo", [name])
