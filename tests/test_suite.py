"""Suite files: the shipped ones are complete and consistent; matrix expansion and cell keys."""

from __future__ import annotations

import pytest

from featspace import heads
from featspace.config import TrainConfig, cell_hash
from featspace.report.tables import parse_table
from featspace.suite import load_suite, parse_suite, suite_names

SHIPPED = ["fewshot-table3", "fewshot-table4", "fewshot-table4-miniimagenet", "hasep-grid", "hasep-grid-cifar10",
           "heads-fashion", "icv-fashion", "lace-ablation", "lace-table1-gpu", "pod-ablation", "pod-table4-gpu"]


def test_shipped_suite_names():
    assert suite_names() == SHIPPED


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_suite_is_complete(name):
    suite = load_suite(name)
    assert suite.description and suite.source and suite.minutes_per_run
    cells = suite.expand()
    assert len({c.key for c in cells}) == len(cells)
    layout = suite.layout()
    for raw in suite.tables:
        spec = parse_table(raw, layout)  # axes exist, paper rows are rows of the table and have the right width
        assert spec.metrics
    for cell in {c.group: c for c in cells}.values():
        config = cell.config
        built = heads.build(config.head, config.embedding_dim or 16, 20 if "100" in config.dataset else 10,
                            **config.head_params)
        assert built.name == config.head
    try:
        from featspace import data, models
    except ImportError:  # pragma: no cover - the data and model packages are part of featspace
        return
    assert {c.config.dataset for c in cells} <= set(data.names())
    assert {c.config.backbone for c in cells} <= set(models.names())


def test_icv_fashion_matrix_is_the_papers():
    suite = load_suite("icv-fashion")
    cells = suite.expand(seeds=1)
    assert len(cells) == 16
    combos = {(c.config.head_params["lam"], c.config.head_params["normalize"], c.config.embedding_dim) for c in cells}
    assert combos == {(lam, norm, dim) for lam in (0.0, 1.0, 0.5, 0.05) for norm in (False, True) for dim in (2, 4)}
    for cell in cells:  # 001 Section 4.1
        assert (cell.config.optimizer, cell.config.lr, cell.config.batch_size, cell.config.max_epochs,
                cell.config.schedule, cell.config.dataset) == ("adam", 0.001, 256, 20, "none", "fashion_mnist")


def test_hasep_grid_is_a_coarse_grid_of_both_heads_plus_softmax_and_lace_arcface():
    suite = load_suite("hasep-grid")
    cells = suite.expand()
    grid = {(c.config.head, c.config.head_params.get("scale"), c.config.head_params.get("margin")) for c in cells}
    margins = (0.1, 0.4, 0.7, 1.0)
    assert {(h, s, m) for h in ("hasep", "arcface") for s in (1, 4, 7, 10) for m in margins} <= grid
    assert ("softmax", None, None) in grid and ("arcface", 30.0, 0.05) in grid and len(grid) == 34
    assert len(cells) == 34 * 3 and suite.seeds == [0, 1, 2]
    cifar = {(c.config.head, c.config.head_params.get("scale"), c.config.head_params.get("margin"))
             for c in load_suite("hasep-grid-cifar10").expand()}
    assert len(cifar) == 201  # the paper's full 10 x 10 grid per head


def test_pod_sweep_shares_the_default_width_cell():
    cells = load_suite("pod-ablation").expand(seeds=1)
    pod = [c for c in cells if c.config.head == "pod" and c.config.embedding_dim == 64]
    assert len(pod) == 1 and len(pod[0].label_sets) == 2  # one run serves Table 4 and the Table 2 sweep


def test_cell_key_is_stable_and_ignores_defaults_and_number_spelling():
    config = TrainConfig(head="icv", head_params={"lam": 0.5}, embedding_dim=2, dataset="fashion_mnist")
    # a literal: changing how keys are computed orphans every run already in users' indexes
    assert cell_hash(config) == "icv-302c6d5437"
    same = TrainConfig(head="icv", head_params={"lam": 0.5, "normalize": False}, embedding_dim=2,
                       dataset="fashion_mnist", seed=7, data_dir="/elsewhere", notes="x", tsne=False)
    assert cell_hash(same) == cell_hash(config)  # seed, non-result fields and head defaults do not count
    assert cell_hash(TrainConfig(head="icv", head_params={"lam": 1})) == cell_hash(
        TrainConfig(head="icv", head_params={"lam": 1.0}))
    assert cell_hash(TrainConfig(head="icv", head_params={"lam": 0.05})) != cell_hash(
        TrainConfig(head="icv", head_params={"lam": 0.5}))
    assert cell_hash(TrainConfig(max_epochs=21)) != cell_hash(TrainConfig())


def test_resolve_order_and_head_switch_drops_recipe_head_params():
    suite = parse_suite({"name": "s", "recipe": "icv-fashion", "set": {"max_epochs": 3},
                         "matrix": {"head": [{"label": "sm", "head": "softmax"}, {"label": "icv", "head": "icv"}]}})
    softmax, icv = suite.expand(seeds=1)
    assert softmax.config.head_params == {}  # the recipe's {lam, normalize} belong to icv
    assert icv.config.head_params == {"lam": 1.0, "normalize": False}
    assert softmax.config.max_epochs == 3
    (user,) = [c for c in suite.expand(seeds=[4], overrides=["max_epochs=5", "head_params.lam=0.2"])
               if c.config.head == "icv"]
    assert user.config.max_epochs == 5 and user.config.head_params["lam"] == 0.2 and user.seed == 4
    assert user.key.endswith("-s4")


@pytest.mark.parametrize("raw, message", [
    ({"recipe": "digits-demo", "bogus": 1}, "unknown field"),
    ({"matrix": {}}, "needs a base 'recipe'"),
    ({"recipe": "digits-demo", "matrix": {"head": []}}, "non-empty list"),
    ({"recipe": "digits-demo", "matrix": {"head": ["softmax", "softmax"]}}, "repeated labels"),
    ({"recipe": "digits-demo", "matrix": {"head": ["softmax"]}, "tables": [{"rows": ["dataset"]}]}, "unknown axis"),
    ({"recipe": "digits-demo", "seeds": 0}, "at least 1"),
])
def test_bad_suites_raise_clear_errors(raw, message):
    with pytest.raises(ValueError, match=message):
        parse_suite(raw)


def test_bad_cell_config_names_the_suite():
    suite = parse_suite({"name": "oops", "recipe": "digits-demo", "matrix": {"max_epochs": [-1]}})
    with pytest.raises(ValueError, match="suite oops: max_epochs"):
        suite.expand()
    with pytest.raises(ValueError, match="unknown suite"):
        load_suite("no-such-suite")


def test_a_suite_without_tables_gets_a_default_table_of_its_axes(tmp_path):
    from featspace.report.build import collect_report
    from featspace.rundir import RunIndex, new_run_dir

    suite = parse_suite({"name": "bare", "recipe": "digits-demo",
                         "matrix": {"head": ["softmax", "nca"], "embedding_dim": [2, 4]}})
    (table,) = suite.tables
    assert table["rows"] == ["head", "embedding_dim"] and "default table" in table["title"]
    assert [m["key"] for m in table["metrics"]][:2] == ["accuracy", "ncc_accuracy"]
    index = RunIndex(tmp_path)
    for cell in suite.expand():
        run_id, path = new_run_dir(tmp_path)
        index.start(run_id, path, cell.config.to_dict(), suite="bare", cell=cell.key)
        index.finish(run_id, {"accuracy": 0.5})
    report, _ = collect_report(suite, root=tmp_path, out_dir=tmp_path / "out")
    assert len(report.tables) == 1 and report.tables[0].cells[0][0].mean == 50.0


def test_a_table_that_leaves_an_axis_out_is_an_error_naming_it():
    raw = {"name": "s", "recipe": "digits-demo", "matrix": {"head": ["softmax", "nca"], "embedding_dim": [2, 4]},
           "tables": [{"title": "T", "rows": ["head"], "metrics": ["accuracy"]}]}
    with pytest.raises(ValueError, match="table 'T' holds no cell of the matrix: it leaves axis 'embedding_dim' out"):
        parse_suite(raw)
    raw["tables"][0]["where"] = {"embedding_dim": 4}  # pinned by where: fine
    parse_suite(raw)
    raw["tables"][0]["where"] = {"embedding_dim": 8}
    with pytest.raises(ValueError, match="its 'where' matches no combination"):
        parse_suite(raw)
    # a second block whose axes the table covers is enough (pod-ablation's Table 4 leaves out the width sweep)
    parse_suite({"name": "s", "recipe": "digits-demo",
                 "matrix": [{"head": ["softmax", "pod"]}, {"head": ["pod"], "embedding_dim": [8, 16]}],
                 "tables": [{"title": "T", "rows": ["head"], "metrics": ["accuracy"]}]})


def test_reference_rows_are_validated_at_load_time():
    base = {"name": "s", "recipe": "digits-demo", "matrix": {"head": [{"label": "CE", "head": "softmax"}, "nca"]},
            "tables": [{"title": "T", "rows": ["head"], "metrics": ["accuracy"]},
                       {"title": "U", "rows": ["head"], "metrics": ["accuracy"], "reference": None}]}
    suite = parse_suite({**base, "reference": "CE"})
    assert suite.tables[0]["reference"] == "CE" and suite.tables[1]["reference"] is None  # a table's own wins
    layout = suite.layout()
    assert parse_table(suite.tables[0], layout).reference == "CE"
    assert parse_table(suite.tables[1], layout).reference == ""
    with pytest.raises(ValueError, match="reference 'softmax' is not a row of the table; rows: CE, nca"):
        parse_suite({**base, "reference": "softmax"})
    with pytest.raises(ValueError, match="'reference' must be the name of the row"):
        parse_suite({**base, "reference": 3})
    with pytest.raises(ValueError, match="reference 'x' is not a row"):
        parse_table({"title": "T", "rows": ["head"], "metrics": ["accuracy"], "reference": "x"}, layout)
