"""Issue 22's suite edges: smoke-sized suites (--train_size, --test_size, --max_epochs) that
never mix with real runs, diverged runs shown as diverged (not as numbers, not retrained),
and merge sources checked before they are copied."""
import dataclasses
import json
import os
import subprocess
import sys
import time
import types

import pytest

from rethinkgen_tf import grids, plots, results, scales, suite

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def flags(scale="cpu", train_size=None, test_size=None, max_epochs=None):
    return types.SimpleNamespace(scale=scale, train_size=train_size, test_size=test_size,
                                 max_epochs=max_epochs)


# ---------------------------------------------------------------- smoke-sized suites

def test_size_and_epoch_overrides_are_part_of_the_run_identity():
    smoke = suite.scale_of(flags(train_size=100, test_size=50, max_epochs=2))
    kw = dict(models=("mlp_1x512", "alexnet"), loss_model="mlp_1x512")
    real, small = grids.figure1_points("cpu", "/d", **kw), grids.figure1_points(smoke, "/d", **kw)
    assert len(real) == len(small)
    for p in small:
        assert (p.data.train_size, p.data.test_size, p.train.epochs) == (100, 50, 2)
    names = {suite.run_dir(p, "out").name for p in real}
    assert not names & {suite.run_dir(p, "out").name for p in small}
    # each override alone moves every run to its own directory
    for one in (dict(train_size=100), dict(test_size=50), dict(max_epochs=2)):
        pts = grids.figure1_points(suite.scale_of(flags(**one)), "/d", **kw)
        assert not names & {suite.run_dir(p, "out").name for p in pts}, one
    # no override: the scale itself, the same directories
    assert suite.scale_of(flags()) is scales.SCALES["cpu"]
    assert names == {suite.run_dir(p, "out").name
                     for p in grids.figure1_points(suite.scale_of(flags()), "/d", **kw)}
    # max_epochs caps: Table 1's caps and the paper scale's per-family epochs
    t1 = grids.table1_points(suite.scale_of(flags(max_epochs=2)), "/d", models=("mlp_1x512",))
    assert {p.train.epochs for p in t1} == {2}
    paper = suite.scale_of(flags(scale="paper", max_epochs=150))
    assert paper.configs("mlp_1x512", None)[0].epochs == 150        # 200 capped
    assert paper.configs("inception", None)[0].epochs == 100        # below the cap
    t4 = grids.table4_points(suite.scale_of(flags(train_size=100, max_epochs=1)), "/d")
    assert {(p.data.train_size, p.train.epochs) for p in t4} == {(100, 1)}
    im = grids.implicit_points(suite.scale_of(flags(train_size=100, test_size=50)), "/d")
    assert {(p.data.train_size, p.data.test_size) for p in im} == {(100, 50)}


@pytest.mark.slow
def test_a_smoke_suite_runs_in_seconds_beside_real_runs(tmp_path):
    import numpy as np
    from PIL import Image
    data = tmp_path / "data"
    rng = np.random.default_rng(0)
    for split, n in (("train", 4), ("test", 2)):
        for name in CLASSES:
            (data / split / name).mkdir(parents=True)
            for i in range(n):
                img = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                Image.fromarray(img).save(data / split / name / f"{i}.png")
    out = tmp_path / "runs"
    t0 = time.time()
    p = subprocess.run([sys.executable, "-m", "experiments.table1", "--models=mlp_1x512",
                        f"--data_dir={data}", f"--output_dir={out}", "--train_size=20",
                        "--test_size=10", "--max_epochs=1"],
                       cwd=REPO, capture_output=True, text=True, timeout=600)
    took = time.time() - t0
    assert p.returncode == 0, p.stderr[-2000:]
    assert "3 to run" in p.stdout and (out / "table1.md").exists()
    made = sorted(d.name for d in out.iterdir() if d.is_dir())
    assert len(made) == 3 and all("_n20_" in n for n in made), made
    for d in made:
        assert results.read_json(out / d / "config.json")["train"]["epochs"] == 1
    real = {suite.run_dir(q, out).name
            for q in grids.table1_points("cpu", str(data), models=("mlp_1x512",))}
    assert not real & set(made)
    assert took < 300, took
    h = subprocess.run([sys.executable, "-m", "experiments.implicit", "--help"], cwd=REPO,
                       capture_output=True, text=True, timeout=300)
    assert all(f in h.stdout for f in ("--train_size", "--test_size", "--max_epochs")), h.stdout


# ---------------------------------------------------------------- diverged runs

def fake_run(d, accs=(0.5, 1.0), status="finished", **extra):
    """A run directory as train.run leaves it: metrics.csv with one row per epoch (test
    accuracy 0.1 x epoch, train accuracy accs[i]; the columns not given NaN, as for a run
    without corrupted examples) and a result.json built from its rows."""
    d.mkdir(parents=True, exist_ok=True)
    rows = [{"epoch": e, "step": 10 * e, "lr": 0.1, "train_loss": 1.0 / e, "train_acc": a,
             "train_eval_loss": 1.0 / e, "train_eval_acc": a, "test_loss": 2.0,
             "test_acc": 0.1 * e, "wall_time": float(e)} for e, a in enumerate(accs, 1)]
    if rows:
        results.write_metrics(d, rows)
    rows = results.read_metrics(d)
    res = {"status": status, "config": {"train": {}, "data": {}}, "epochs": len(rows),
           "steps": rows[-1]["step"] if rows else 0, "final": rows[-1] if rows else None,
           "num_train": 100,
           "overfit_step": next((r["step"] for r in rows if r["train_eval_acc"] >= 1), None),
           **extra}
    results.write_json(d / "result.json", res)
    return res


def diverged_run(d, epoch=3):
    """What train.run leaves when the loss becomes NaN in `epoch`: the rows of the epochs
    before it, result.json status "diverged" with diverged_epoch, _what and _value."""
    return fake_run(d, accs=(0.3,) * (epoch - 1), status="diverged", diverged_epoch=epoch,
                    diverged_what="training loss", diverged_value="NaN")


def test_a_diverged_run_counts_as_done_unless_overwrite(tmp_path, monkeypatch, capsys):
    pts = grids.table1_points("paper", None, models=("mlp_1x512",))
    fake_run(suite.run_dir(pts[0], tmp_path))
    diverged_run(suite.run_dir(pts[1], tmp_path))
    trained = []

    def train(p, d, overwrite, *args):
        trained.append(d.name)
        return {**fake_run(d), "run_dir": str(d)}

    monkeypatch.setattr(suite, "_train", train)
    out = suite.run_grid(pts, tmp_path)
    assert "2 finished already (1 of them diverged), 1 to run" in capsys.readouterr().out
    assert trained == [suite.run_dir(pts[2], tmp_path).name]
    assert results.diverged(out[1][1]) and out[1][1]["diverged_epoch"] == 3
    trained.clear()
    suite.run_grid(pts, tmp_path)  # a rerun trains nothing, the diverged run included
    assert trained == []
    suite.run_grid(pts, tmp_path, overwrite=True)
    assert len(trained) == 3


@pytest.mark.slow
def test_a_run_that_diverges_in_a_grid(tmp_path, capsys):
    """A real divergence (learning rate 1e9) in the middle of a grid: the grid goes on, the
    point is diverged, and a rerun trains nothing."""
    from tiny import ARRAYS, DATA

    from rethinkgen_tf import train
    from rethinkgen_tf.data import load
    cfg = train.TrainConfig(model="mlp_1x64", epochs=2, learning_rate=0.01, record_examples="none")
    pts = [suite.point(cfg, DATA, lr="0.01"),
           suite.point(dataclasses.replace(cfg, learning_rate=1e9), DATA, lr="1e9")]
    out = suite.run_grid(pts, tmp_path, data_cache={DATA: load(DATA, ARRAYS)})
    text = capsys.readouterr().out
    assert [results.diverged(r) for _, r in out] == [False, True]
    bad = out[1][1]
    assert bad["diverged_epoch"] == 1 and bad["epochs"] == 0 and bad["final"] is None
    assert f"{suite.run_dir(pts[1], tmp_path).name} diverged: the training loss became NaN in " \
        "epoch 1" in text
    assert suite.check_source(bad["run_dir"])["status"] == "diverged"  # a merge takes it
    suite.run_grid(pts, tmp_path, data_cache={})  # no data: it would fail if it trained
    assert "2 finished already (1 of them diverged), 0 to run" in capsys.readouterr().out


def test_tables_show_diverged_and_leave_it_out_of_means(tmp_path):
    pts = grids.table1_points("paper", None, models=("mlp_1x512",), seeds=2)
    pairs = []
    for p in pts:
        d = suite.run_dir(p, tmp_path)
        # row 0 (weight decay, true labels): seed 1 diverged; row 1: both seeds diverged
        if (p.tag["wd"] and p.tag["seed"] == 1) or (not p.tag["wd"] and not p.tag["random_labels"]):
            res = diverged_run(d, epoch=3 + p.tag["seed"])
        else:
            res = fake_run(d, accs=(0.5, 0.9 + 0.05 * p.tag["seed"]))
        pairs.append((p, {**res, "run_dir": str(d)}))
    md = plots.table1(pairs, tmp_path)["markdown"]
    rows = [line.split(" | ") for line in md.splitlines()[2:5]]
    assert rows[0][4:6] == ["90.00 (1 diverged, left out)", "20.00 (1 diverged, left out)"]
    assert rows[0][-1].rstrip(" |") == "1 + 1 diverged"
    assert rows[1][4:6] == ["diverged (epoch 3/4)"] * 2 and rows[1][-1].rstrip(" |") == "0 + 2 diverged"
    assert rows[2][4] == "92.50 ± 3.54"
    assert "Diverged: the run's loss became non-finite" in md
    assert "nan" not in md.lower()
    tex = (tmp_path / "table1.tex").read_text()
    assert "diverged (epoch 3/4)" in tex
    # Table 4 likewise
    p4 = grids.table4_points("paper", None)[:1]
    d = suite.run_dir(p4[0], tmp_path)
    md4 = plots.table4([(p4[0], {**diverged_run(d, 5), "run_dir": str(d)})], tmp_path)["markdown"]
    assert "diverged (epoch 5)" in md4.splitlines()[2]


def test_figures_skip_diverged_runs_and_say_so(tmp_path):
    pts = grids.figure1_points("paper", None, models=("mlp_1x512",), loss_model="mlp_1x512",
                               corruptions=(0.0, 0.5, 1.0), seeds=2)
    pairs = []
    for p in pts:
        d = suite.run_dir(p, tmp_path / "runs")
        t = p.tag
        if (t["part"] == "a" and t.get("randomize") == "labels") or \
                (t["part"] == "bc" and t["corrupt"] == 0.5 and t["seed"] == 1):
            res = diverged_run(d, epoch=4)
        else:
            res = fake_run(d, accs=(0.5, 1.0) if t.get("corrupt", 0) < 1 else (0.4, 0.8, 1.0))
        pairs.append((p, {**res, "run_dir": str(d)}))
    out = plots.figure1(pairs, tmp_path)
    assert "(a) random labels: seed 0 at epoch 4, seed 1 at epoch 4" in out["diverged"]
    assert "(b, c) MLP 1x512, p = 0.5: seed 1 at epoch 4" in out["diverged"]
    assert out["a"]["labels"]["diverged"] == {0: 4, 1: 4}
    assert out["a"]["labels"]["overfit_step_mean"] is None
    c = out["c"]["mlp_1x512"]
    assert c[0.5]["seeds"] == 1 and c[0.5]["mean"] == pytest.approx(1 - 0.2)  # seed 0 alone
    assert c[1.0]["seeds"] == 2
    assert out["b"]["mlp_1x512"][0.5]["seeds"] == 1
    assert all(os.path.getsize(f) > 1000 for f in out["files"])
    # Figure 2b: the diverged model's panel says so instead of a curve
    im = grids.implicit_points("paper", None)
    d0, d1 = (suite.run_dir(p, tmp_path / "runs") for p in im)
    pairs = [(im[0], {**fake_run(d0), "run_dir": str(d0)}),
             (im[1], {**diverged_run(d1, 6), "run_dir": str(d1)})]
    num = plots.implicit(pairs, tmp_path)
    assert num["inception_nobn"] == {"diverged_epoch": 6}
    assert num["inception"]["final_test"] == pytest.approx(0.2)


# ---------------------------------------------------------------- merge sources

def test_merge_checks_each_source_run_and_skips_damaged_ones(tmp_path, capsys):
    src, dst = tmp_path / "shard", tmp_path / "merged"
    fake_run(src / "good", accs=(0.5, 0.8, 1.0))
    diverged_run(src / "diverged", epoch=3)  # consistent: copied like a finished run
    fake_run(src / "truncated", accs=(0.5, 0.8, 1.0))
    lines = (src / "truncated" / "metrics.csv").read_text().splitlines()
    (src / "truncated" / "metrics.csv").write_text("\n".join(lines[:-1]) + "\n")
    fake_run(src / "no_metrics")
    (src / "no_metrics" / "metrics.csv").unlink()
    fake_run(src / "other_final", accs=(0.5, 0.8))
    res = results.read_json(src / "other_final" / "result.json")
    res["final"]["test_acc"] = 0.99
    results.write_json(src / "other_final" / "result.json", res)
    fake_run(src / "bad_metrics")
    (src / "bad_metrics" / "metrics.csv").write_text("epoch,step\n1,x\n")
    fake_run(src / "bad_result")
    (src / "bad_result" / "result.json").write_text("{garbage")
    capsys.readouterr()
    assert suite.merge([src], dst) == 2
    out = capsys.readouterr().out.splitlines()
    skipped = {name: [line for line in out if f"{src / name}" in line and "skipped" in line]
               for name in ("truncated", "no_metrics", "other_final", "bad_metrics", "bad_result")}
    assert all(len(v) == 1 for v in skipped.values()), out
    assert "has 2 rows but result.json says 3 epochs" in skipped["truncated"][0]
    assert "is missing" in skipped["no_metrics"][0]
    assert "final row" in skipped["other_final"][0]
    assert "metrics.csv is damaged" in skipped["bad_metrics"][0]
    assert "result.json is damaged" in skipped["bad_result"][0]
    assert sorted(d.name for d in dst.iterdir()) == ["diverged", "good"]
    assert results.diverged(results.load_result(dst / "diverged"))
    assert len(results.read_metrics(dst / "diverged")) == 2
    # skipped sources were not copied, so a second merge checks (and skips) them again
    assert suite.merge([src], dst) == 0


@pytest.mark.slow
def test_merge_takes_a_real_run_and_skips_its_truncated_copy(tmp_path, capsys):
    import shutil

    from tiny import ARRAYS, DATA

    from rethinkgen_tf import train
    from rethinkgen_tf.data import load
    ref = tmp_path / "a" / "run"
    train.run(train.TrainConfig(model="mlp_1x64", epochs=2, learning_rate=0.01,
                                record_examples="none"), DATA, ref, data=load(DATA, ARRAYS))
    shutil.copytree(ref, tmp_path / "b" / "run2")
    metrics = tmp_path / "b" / "run2" / "metrics.csv"
    metrics.write_text("".join(metrics.read_text().splitlines(keepends=True)[:2]))
    capsys.readouterr()
    assert suite.merge([tmp_path / "a", tmp_path / "b"], tmp_path / "m") == 1
    out = capsys.readouterr().out
    assert "run2" in out and "has 1 rows but result.json says 2 epochs" in out
    assert json.loads((tmp_path / "m" / "run" / "result.json").read_text())["status"] == "finished"
