"""The experiment suite: grids, resumption/skipping, sharding and merging,
figures and tables drawn from saved results (on a tiny generated CIFAR-10)."""
import dataclasses
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from rethinkgen_tf import grids, plots, recipes, scales, suite

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@pytest.fixture(scope="module")
def tiny_cifar(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_cifar")
    rng = np.random.default_rng(0)
    for split, n in (("train", 8), ("test", 3)):
        for k, name in enumerate(CLASSES):
            d = root / split / name
            d.mkdir(parents=True)
            for i in range(n):
                img = np.clip(rng.normal(25 * k, 40, (32, 32, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(img).save(d / f"{i:04d}.png")
    return str(root)


@pytest.fixture
def tiny_scale(monkeypatch):
    cpu = scales.SCALES["cpu"]
    monkeypatch.setitem(scales.SCALES, "cpu", dataclasses.replace(
        cpu, train_size={"mlp": 40, "alexnet": 40, "inception": 40, recipes.OTHER: 1000},
        test_size=20, max_epochs={"mlp": 2, "alexnet": 2, "inception": 2, recipes.OTHER: 300}))


def test_grid_points_and_keys(tiny_scale):
    pts = grids.figure1_points("cpu", "/data", models=("mlp_1x512", "alexnet"))
    assert len(pts) == 5 + 2 * 6
    assert len({suite.config_key(p) for p in pts}) == len(pts)  # every run its own directory
    bc = [p for p in pts if p.tag["part"] == "bc"]
    assert all(p.train.stop_on_overfit and p.data.train_size == 40 for p in bc)
    assert sorted({p.data.corrupt for p in bc}) == list(grids.CORRUPTIONS)
    assert all(p.data.randomize != "none" or p.data.corrupt == 0 or p.tag["part"] == "bc" for p in pts)
    # The cpu scale keeps the paper's learning-rate decay per step.
    assert bc[0].train.lr_decay == pytest.approx(0.95 ** (40 / 50_000))
    t1 = grids.table1_points("paper", None, models=("mlp_1x512",))
    assert len(t1) == 3 and {p.train.weight_decay for p in t1} == {0.0, 5e-4}
    assert all(p.data.train_size is None for p in t1)
    # Table 1 at the cpu scale stops once fit, with an epoch cap per model family.
    t1c = grids.table1_points("cpu", "/data", models=("mlp_1x512", "alexnet"))
    assert len(t1c) == 8 and all(p.train.stop_on_overfit for p in t1c)
    assert {p.train.model: p.train.epochs for p in t1c} == {
        "mlp_1x512": grids.CPU_TABLE_EPOCHS["mlp"], "alexnet": grids.CPU_TABLE_EPOCHS["alexnet"]}
    with pytest.raises(ValueError, match="shard"):
        suite.parse_shard("3/2")
    # Only non-default settings enter the key: a new setting left at its
    # default does not move finished runs.
    p = bc[0]
    assert suite.config_key(p) == suite.config_key(
        suite.Point(p.tags, dataclasses.replace(p.train, verbose=1, overwrite=True,
                                                test_every=1), p.data))
    assert all(q.train.test_every == grids.CPU_TEST_EVERY for q in bc)
    # Batch norm models at the cpu scale: moving averages over the same fraction of an epoch.
    inc = grids.configs("inception", "cpu", "/data")[0]
    assert inc.bn_momentum == pytest.approx(0.997 ** (50_000 / 40), abs=1e-4)
    assert grids.configs("inception_nobn", "cpu", "/data")[0].bn_momentum is None
    assert grids.configs("inception", "paper", "/data")[0].bn_momentum is None
    assert suite.config_key(p) != suite.config_key(
        suite.Point(p.tags, dataclasses.replace(p.train, max_steps=5), p.data))


@pytest.mark.slow
def test_shards_merge_skip_and_plot(tiny_cifar, tiny_scale, tmp_path, capsys):
    pts = grids.figure1_points("cpu", tiny_cifar, models=("mlp_1x512",),
                                 corruptions=(0.0, 1.0), parts="bc")
    a, b, merged = tmp_path / "a", tmp_path / "b", tmp_path / "m"
    ra = suite.run_grid(pts, a, shard=(0, 2), data_cache={})
    rb = suite.run_grid(pts, b, shard=(1, 2), data_cache={})
    assert len(ra) == 1 and len(rb) == 1
    assert suite.merge([a, b], merged) == 2
    pairs = suite.collect(pts, merged)
    assert all(res is not None and res["status"] == "finished" for _, res in pairs)
    # Finished runs are skipped: nothing is trained again.
    capsys.readouterr()
    again = suite.run_grid(pts, merged, data_cache={})
    assert "2 finished already, 0 to run" in capsys.readouterr().out
    assert [r["run_dir"] for _, r in again] == [r["run_dir"] for _, r in pairs]
    out = plots.figure1(pairs, merged)
    assert set(out["c"]["mlp_1x512"]) == {0.0, 1.0}
    assert all(os.path.getsize(f) > 1000 for f in out["files"])


@pytest.mark.slow
def test_table_markdown_has_paper_numbers(tiny_cifar, tiny_scale, tmp_path):
    pts = grids.table1_points("cpu", tiny_cifar, models=("mlp_1x512",))
    pairs = [(p, None) for p in pts]
    out = plots.table1(pairs, tmp_path)
    assert "50.51" in out["markdown"] and "10.61" in out["markdown"] and "(not run)" in out["markdown"]
    assert (tmp_path / "table1.tex").read_text().startswith("\\begin{tabular}")


@pytest.mark.slow
def test_cli_errors_are_one_line():
    r = subprocess.run([sys.executable, "-m", "experiments.figure1", "--shard=5/2", "--plot_only"],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode != 0
    assert r.stderr.strip().splitlines()[-1].startswith("error: --shard=5/2")
    assert "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "experiments.figure1", "--plot_only", "--train_only"],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and r.stderr.strip().splitlines() == [
        "error: --plot_only and --train_only exclude each other; pass one of them"], r.stderr


@pytest.mark.slow
def test_seeds_resume_and_means(tiny_cifar, tiny_scale, tmp_path, capsys):
    """--seeds=2 on a grid run with one seed trains only the new seed; the figure shows
    means and spreads over the seeds."""
    kw = dict(models=("mlp_1x512",), corruptions=(0.0, 1.0), parts="bc")
    suite.run_grid(grids.figure1_points("cpu", tiny_cifar, **kw), tmp_path, data_cache={})
    capsys.readouterr()
    pts = grids.figure1_points("cpu", tiny_cifar, seeds=2, **kw)
    suite.run_grid(pts, tmp_path, data_cache={})
    assert "4 runs in the grid, 4 in shard 0/1, 2 finished already, 2 to run" in capsys.readouterr().out
    pairs = suite.collect(pts, tmp_path)
    out = plots.figure1(pairs, tmp_path)
    errors = {p.tag["seed"]: 1 - r["final"]["test_acc"] for p, r in pairs if p.tag["corrupt"] == 1.0}
    c1 = out["c"]["mlp_1x512"][1.0]
    assert c1["seeds"] == 2 and c1["mean"] == pytest.approx(np.mean(list(errors.values())))
    assert c1["std"] == pytest.approx(np.std(list(errors.values()), ddof=1))


def test_tables_give_mean_and_spread_over_seeds(tmp_path):
    pts = grids.table1_points("paper", None, models=("mlp_1x512", "linear"), seeds=3)
    accs = {0: (1.0, 0.50), 1: (0.99, 0.52), 2: (0.98, 0.54)}

    def res(p):  # the first row (MLP, weight decay, true labels) has no seed 2 yet
        if p.tag["seed"] == 2 and p.tag["wd"]:
            return None
        train, test = accs[p.tag["seed"]]
        return {"final": {"train_eval_acc": train, "test_acc": test}, "num_train": 50_000,
                "epochs": 10 + p.tag["seed"]}

    out = plots.table1([(p, res(p)) for p in pts], tmp_path)
    rows = [line.split(" | ") for line in out["markdown"].splitlines()[2:]]
    assert len(rows) == 5  # MLP 1x512's three rows and the linear control's two
    first, linear_random = rows[0], rows[-1]
    assert first[4:6] == ["99.50 ± 0.71", "51.00 ± 1.41"] and first[-1].rstrip(" |") == "2"
    assert linear_random[0] == "| linear (control)" and linear_random[3] == "random"
    assert linear_random[4:8] == ["99.00 ± 1.00", "52.00 ± 2.00", "—", "—"]
    assert linear_random[9:] == ["10/11/12", "3 |"]
    assert "$\\pm$" in (tmp_path / "table1.tex").read_text()
    one = plots.table1([(p, res(p)) for p in pts if p.tag["seed"] == 0], tmp_path)
    assert "| 100.00 | 50.00 |" in one["markdown"] and "±" not in one["markdown"]
