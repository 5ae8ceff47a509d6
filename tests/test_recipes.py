"""rethinkgen_tf.recipes: the per-family schedules and the suite's scales, in one place;
finished suite runs keep their directory names."""
import dataclasses
import re
from pathlib import Path

import pytest
from absl import flags as absl_flags

from rethinkgen_tf import cli, grids, models, recipes, scales, suite
from rethinkgen_tf.train import TrainConfig

ROOT = Path(__file__).resolve().parents[1]

# suite.run_dir(point, "runs/x") of grid points.  A change here orphans every finished
# run of that point: `run_grid` would train it again.  The paper-scale (b, c), Table 1,
# Table 4 and Figure 2b names were computed before recipes.py existed (grids.py held the
# cpu sizes, train.py/models.py the schedules).  Two deliberate changes moved the others:
# the cpu scale's sizes follow scales.cpu_train_size (MLPs 10,000, AlexNet 5,000,
# Inception and WRN 1,000; were 2,000, 1,000, 500), and Figure 1 (a) runs stop once fit,
# so (a)'s true-label run of a model is its (b, c) run at p = 0 (same directory).
PINNED = {
    # (grid, scale, data_dir, seed, index in the grid): run directory name
    ("figure1", "paper", None, 0, 0): "cifar10_inception_s0-eaf3ab28c0",
    ("figure1", "paper", None, 0, 5): "cifar10_inception_s0-eaf3ab28c0",
    # AlexNet's paper-scale fit threshold is 99.9% (as the MLPs'), set before any such run
    ("figure1", "paper", None, 0, 16): "cifar10_alexnet_corrupt1_s0-a4a9c6df93",
    ("figure1", "cpu", None, 0, 0): "cifar10_inception_n1000_s0-95be27c724",
    ("figure1", "cpu", None, 0, 5): "cifar10_inception_n1000_s0-95be27c724",
    ("figure1", "cpu", None, 0, 16): "cifar10_alexnet_corrupt1_n5000_s0-ef3f7e71dc",
    ("figure1", "cpu", None, 0, 22): "cifar10_mlp_1x512_corrupt1_n10000_s0-53c2c85ea5",
    ("table1", "paper", None, 0, 0): "cifar10_inception_wd0.0005_crop_s0-086b7ac543",
    ("table1", "paper", None, 0, 18): "cifar10_mlp_1x512_labels_s0-b959f271ba",
    ("table1", "cpu", None, 0, 0): "cifar10_inception_wd0.0005_crop_n1000_s0-4eae0fc23e",
    ("table1", "cpu", None, 0, 5): "cifar10_inception_nobn_wd0.0005_n1000_s0-7b83f901b1",
    ("table1", "cpu", None, 0, 18): "cifar10_mlp_1x512_labels_n10000_s0-d1b8153df3",
    # where the data lies is not part of the key (it was: 799f0a558e, suite.config_key legacy)
    ("table1", "cpu", "/data", 3, 9): "cifar10_alexnet_crop_n5000_s3-afa46b8e52",
    ("table4", "paper", None, 0, 0): "cifar10_inception_labels_wd0.0005_s0-cddc7a7f71",
    ("table4", "paper", None, 0, 3): "cifar10_mlp_1x512_labels_wd0.0005_s0-61ea4be61c",
    ("table4", "cpu", None, 0, 0): "cifar10_inception_labels_wd0.0005_n1000_s0-b21e02584d",
    ("table4", "cpu", None, 0, 3): "cifar10_mlp_1x512_labels_wd0.0005_n10000_s0-487ee88489",
    ("table4", "cpu", None, 0, 5): "cifar10_inception_labels_crop_flip_n1000_s0-e56b8bf1f1",
    ("implicit", "paper", None, 0, 0): "cifar10_inception_s0-c7c0df7832",
    ("implicit", "paper", None, 0, 1): "cifar10_inception_nobn_s0-9e921df2a6",
    ("implicit", "cpu", None, 0, 0): "cifar10_inception_n1000_s0-b5b9842d4f",
    ("implicit", "cpu", None, 0, 1): "cifar10_inception_nobn_n1000_s0-0f3577794b",
}
GRIDS = {"figure1": grids.figure1_points, "table1": grids.table1_points,
         "table4": grids.table4_points, "implicit": grids.implicit_points}


def test_pinned_suite_keys_and_run_dirs_unchanged():
    for (grid, scale, data_dir, seed, k), name in PINNED.items():
        p = GRIDS[grid](scale, data_dir, seed=seed)[k]
        assert suite.config_key(p) == name.rsplit("-", 1)[1], (grid, scale, k)
        assert suite.run_dir(p, "runs/x") == Path("runs/x") / name, (grid, scale, k)
    # Other models (MLP 3x512, WRN) in Figure 1 keep their keys too.
    for scale, k, name in [("cpu", 8, "cifar10_mlp_3x512_corrupt0.6_n10000_s0-df3840fed2"),
                           ("cpu", 15, "cifar10_wrn_28_10_corrupt0.8_n1000_s0-72002f02f4"),
                           ("paper", 15, "cifar10_wrn_28_10_corrupt0.8_s0-c46f446b7b")]:
        p = grids.figure1_points(scale, None, models=("mlp_3x512", "wrn_28_10"),
                                   loss_model="alexnet")[k]
        assert suite.run_dir(p, "o").name == name


def test_train_config_resolves_from_the_recipes():
    for model, fam in [("inception", "inception"), ("wrn_28_10", "wrn"), ("alexnet", "alexnet"),
                       ("mlp_1x512", "mlp"), ("mlp_3x512", "mlp"), ("inception_v3", "other")]:
        r = recipes.RECIPES.get(fam, recipes.OTHER_RECIPE)
        c = TrainConfig(model=model).resolved()
        assert (c.learning_rate, c.lr_decay, c.epochs) == (r.learning_rate, r.lr_decay, r.epochs)
        assert c.bn_momentum is None  # not resolved: config.json and suite keys stay as they were
        assert c.resolved() == c
    # today's numbers (docs/training.md)
    assert {f: (r.learning_rate, r.lr_decay, r.epochs) for f, r in recipes.RECIPES.items()} == {
        "inception": (0.1, 0.95, 100), "wrn": (0.1, 0.95, 100), "alexnet": (0.01, 0.95, 100),
        "mlp": (0.01, 0.985, 200), "linear": (0.01, 0.985, 200)}
    assert (recipes.OTHER_RECIPE.learning_rate, recipes.OTHER_RECIPE.lr_decay,
            recipes.OTHER_RECIPE.epochs) == (0.1, 0.95, 100)
    # the names other modules read
    assert models.DEFAULT_LEARNING_RATE == {"inception": 0.1, "wrn": 0.1, "alexnet": 0.01,
                                            "mlp": 0.01, "linear": 0.01}
    assert models.BN_MOMENTUM == recipes.BN_MOMENTUM == 0.997


def test_train_config_validates_itself():
    with pytest.raises(ValueError, match="epochs"):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError, match="unknown model"):
        TrainConfig(model="resnet")
    c = TrainConfig(model="mlp_1x8")
    with pytest.raises(ValueError, match="dropout"):
        dataclasses.replace(c, dropout=1.0)
    assert c.validate() is None  # kept for callers that still call it


def test_scales():
    assert scales.SCALES == {"paper": scales.PAPER, "cpu": scales.CPU}
    with pytest.raises(ValueError, match="unknown scale 'gpu'; choose paper or cpu"):
        grids.table1_points("gpu", None)
    cpu = scales.CPU
    t, d = cpu.configs("mlp_1x512", "/data", 2, corrupt=0.4, weight_decay=1e-3)
    assert (d.train_size, d.balanced, d.test_size, d.corrupt, d.seed, d.shuffle_seed) == \
        (10_000, True, 2000, 0.4, 2, 2)
    assert (t.epochs, t.lr_decay, t.learning_rate, t.weight_decay, t.bn_momentum, t.seed) == \
        (300, 0.95 ** (10_000 / 50_000), 0.01, 1e-3, None, 2)
    t, d = cpu.configs("inception", None)
    assert (d.train_size, t.bn_momentum) == (1000, round(0.997 ** 50, 4))
    t, _ = cpu.configs("inception_nobn", None)
    assert (t.model, t.batchnorm, t.bn_momentum) == ("inception", False, None)
    assert cpu.subset("wrn_16_4") == 1000 and cpu.subset("inception_v3") == 1000
    assert cpu.subset("linear") == 10_000
    assert cpu.per_epoch(0.999, "alexnet") == 0.999 ** (5000 / 50_000)
    assert cpu.table1_overrides("mlp_3x512") == {"stop_on_overfit": True, "epochs": 100}
    assert cpu.table1_overrides("inception_nobn") == {"stop_on_overfit": True, "epochs": 60}
    assert cpu.figure1_test_every == 10
    # the paper scale changes nothing: the recipe's schedule on all of CIFAR-10
    paper = scales.PAPER
    t, d = paper.configs("mlp_1x512", None)
    assert (d.train_size, d.test_size, t.epochs, t.lr_decay, t.bn_momentum) == \
        (None, None, 200, 0.985, None)
    assert paper.per_epoch(0.999, "mlp_1x512") == 0.999
    assert paper.table1_overrides("alexnet") == {} and paper.figure1_test_every == 1
    # Figure 1 stops once fit: at 100%, but 99.9% for MLPs at full scale (never 100%)
    assert paper.figure1_overrides("mlp_1x512") == {"stop_on_overfit": True,
                                                    "overfit_threshold": 0.999}
    assert paper.figure1_overrides("alexnet")["overfit_threshold"] == 0.999
    assert paper.figure1_overrides("inception")["overfit_threshold"] == 1.0
    assert cpu.figure1_overrides("mlp_1x512") == {"stop_on_overfit": True, "overfit_threshold": 1.0}
    with pytest.raises(ValueError, match="nonsense is not a TrainConfig or DataConfig field"):
        paper.configs("alexnet", None, nonsense=1)
    # read-only; varied with dataclasses.replace, which needs a fallback for other families
    with pytest.raises(TypeError):
        cpu.train_size["mlp"] = 1
    with pytest.raises(ValueError, match="other"):
        dataclasses.replace(cpu, train_size={"mlp": 10})
    # the names grids.py had, read from the current cpu scale
    assert grids.CPU_TABLE_EPOCHS["mlp"] == 100 and grids.CPU_TEST_EVERY == 10
    assert grids.CPU_TRAIN_SIZE["inception"] == 1000 and grids.CPU_TEST_SIZE == 2000
    assert grids.BN_FAMILIES == ("inception", "wrn") and grids.PAPER_DECAY == 0.95


def test_no_scale_branches_outside_scales():
    for path in [*(ROOT / "rethinkgen_tf").glob("*.py"), *(ROOT / "experiments").glob("*.py")]:
        if path.name != "scales.py":
            assert not re.search(r"scale\s*[!=]=", path.read_text()), path


def test_flag_help_quotes_the_recipes():
    if "corrupt" not in absl_flags.FLAGS:
        cli.define(("cifar10",), "inception")
    help_of = lambda name: absl_flags.FLAGS[name].help
    mlp = recipes.recipe("mlp")
    assert f"{recipes.recipe('inception').epochs} for Inception" in help_of("epochs")
    assert f"{mlp.epochs} for MLPs" in help_of("epochs")
    assert f"{mlp.learning_rate} for AlexNet/MLPs" in help_of("learning_rate")
    assert f"{mlp.lr_decay} for MLPs" in help_of("lr_decay")
    assert f"{recipes.TABLE4_LR_DECAY}" in help_of("lr_decay")
    assert f"default {recipes.BN_MOMENTUM}" in help_of("bn_momentum")
    assert "on for Inception/WRN, off for AlexNet/MLPs" in help_of("batchnorm")


def test_cpu_sizes_follow_the_stated_rule():
    """n >= 4 x the 2,352 inputs where one Figure 1 (b, c) run fits the time budget, else
    the largest size that does; the rule's inputs are the module's constants."""
    assert scales.INPUT_DIM == 2352 and scales.MIN_RATIO * scales.INPUT_DIM == 9408
    sizes = dict(scales.CPU.train_size)
    assert sizes == {"mlp": 10_000, "linear": 10_000, "alexnet": 5000, "inception": 1000,
                     "wrn": 1000, "other": 1000}
    for family, n in sizes.items():
        assert scales.run_seconds(family, n) <= scales.RUN_BUDGET_S
        bigger = [s for s in scales.SIZES if s > n]
        # either meaningful already (the smallest such size) or the next size is over budget
        assert n >= 9408 and all(s >= n for s in scales.SIZES if s >= 9408) or \
            scales.run_seconds(family, bigger[0]) > scales.RUN_BUDGET_S
    # a faster machine moves the convnets up to the meaningful size, never past it
    fast = {f: 100 * v for f, v in scales.THROUGHPUT.items()}
    import unittest.mock as mock
    with mock.patch.dict(scales.THROUGHPUT, fast):
        assert {scales.cpu_train_size(f) for f in sizes} == {10_000}


def test_seeds_axis_keys_and_tags():
    one = grids.figure1_points("cpu", "/d", models=("mlp_1x512",), loss_model="mlp_1x512")
    two = grids.figure1_points("cpu", "/d", models=("mlp_1x512",), loss_model="mlp_1x512", seeds=2)
    assert len(two) == 2 * len(one) == 22
    # the first seed's points are the single-seed grid's: finished runs are found
    assert [suite.run_dir(p, "o") for p in two[:11]] == [suite.run_dir(p, "o") for p in one]
    assert {p.tag["seed"] for p in two[:11]} == {0} and {p.tag["seed"] for p in two[11:]} == {1}
    for p0, p1 in zip(two[:11], two[11:]):
        assert p1.train.seed == p1.data.seed == p1.data.shuffle_seed == 1
        assert suite.run_dir(p0, "o").name.replace("_s0-", "_s1-").split("-")[0] == \
            suite.run_dir(p1, "o").name.split("-")[0]
        assert suite.config_key(p0) != suite.config_key(p1)
    # (a)'s true-label run is (b, c)'s p = 0 run (same directory), per seed
    assert suite.run_dir(two[0], "o") == suite.run_dir(two[5], "o")
    assert [p.tag["seed"] for p in grids.table1_points("cpu", None, ("linear",), seed=3, seeds=2)] \
        == [3, 3, 4, 4]
    assert len(grids.table4_points("paper", None, seeds=3)) == 3 * len(grids.TABLE4)
    assert len(grids.implicit_points("cpu", None, seed=5, seeds=2)) == 4
    with pytest.raises(ValueError, match="--seeds must be >= 1"):
        grids.figure1_points("cpu", None, seeds=0)


def test_the_data_path_is_not_part_of_a_point_and_old_directories_are_found(tmp_path):
    here, there = (grids.table1_points("cpu", d, seed=3)[9] for d in ("/data", "/elsewhere/c10"))
    assert suite.config_key(here) == suite.config_key(there) == "afa46b8e52"
    assert suite.config_key(here, legacy=True) == "799f0a558e"  # the earlier versions' key
    assert suite.config_key(there, legacy=True) != "799f0a558e"
    # a suite directory of an earlier version keeps its runs
    old = tmp_path / "cifar10_alexnet_crop_n5000_s3-799f0a558e"
    old.mkdir()
    assert suite.run_dir(here, tmp_path) == old
    assert suite.run_dir(there, tmp_path).name.endswith("-afa46b8e52")
    new = tmp_path / "cifar10_alexnet_crop_n5000_s3-afa46b8e52"
    new.mkdir()
    assert suite.run_dir(here, tmp_path) == new  # the current key first
