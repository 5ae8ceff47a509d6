"""Every reproduction number the README and docs quote agrees with a committed record
(docs/results), the records are compact and count as finished runs for a suite, and the
pictures drawn from them say what they show (rethinkgen_tf.report, experiments/report.py)."""
import dataclasses
import json
import shutil
import types

import matplotlib
import numpy as np
import pytest

from rethinkgen_tf import grids, plots, recipes, report, results, scales, suite

matplotlib.use("Agg")


def test_docs_agree_with_the_committed_records():
    assert report.problems() == []


def _copy_docs(tmp_path):
    for doc in report.DOCS:
        (tmp_path / doc).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(report.ROOT / doc, tmp_path / doc)
    return tmp_path


def _edit(path, old, new):
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def test_an_edited_prose_number_fails(tmp_path):
    root = _copy_docs(tmp_path)
    assert report.problems(root) == []
    _edit(root / "README.md", "gives 40.8% test error", "gives 40.7% test error")
    found = report.problems(root)
    assert any("README.md" in p and "40.8%" in p for p in found), found
    assert any("'40.7%' has no record" in p for p in found), found


def test_an_edited_table_number_fails(tmp_path):
    root = _copy_docs(tmp_path)
    _edit(root / "docs/theory.md", "| 23.83% |", "| 22.83% |")
    found = report.problems(root)
    assert any("region 'kernel_curve' differs" in p for p in found), found


def test_a_number_without_a_record_fails(tmp_path):
    root = _copy_docs(tmp_path)
    _edit(root / "docs/experiments.md", "## How a suite runs",
          "Our AlexNet reaches 81.3% here.\n\n## How a suite runs")
    found = report.problems(root)
    assert found and all("'81.3%' has no record" in p for p in found), found


def test_a_missing_record_fails(tmp_path):
    root = _copy_docs(tmp_path)
    shutil.copytree(report.ROOT / report.RESULTS, tmp_path / "results")
    (tmp_path / "results/kernel/cifar10_raw.json").unlink()
    found = report.problems(root, report.Records(tmp_path / "results"))
    assert any("cifar10_raw.json does not exist" in p for p in found), found


def test_regions_fill_and_read_back():
    text = "a\n<!-- report:x -->\nold\n<!-- /report:x -->\nb\n"
    new = report.fill(text, {"x": "| 1 |\n| 2 |"})
    assert report.regions(new) == {"x": "| 1 |\n| 2 |"}
    assert new.startswith("a\n") and new.endswith("b\n")
    assert report.fill(new, {"y": "z"}) == new


# ---- records: export, and suites that count them as finished
def _finished_run(d, cfg):
    """A finished run directory as train.run leaves it (record files, weights, tb/)."""
    d.mkdir(parents=True)
    rows = [{"epoch": e, "step": 10 * e, "lr": 0.01, "train_loss": 1.0 / e, "train_acc": 0.5,
             "train_eval_acc": 0.5 + e / 4, "test_acc": 0.3} for e in (1, 2)]
    results.write_metrics(d, rows)
    results.write_json(d / "config.json", cfg)
    results.write_json(d / "result.json", {"status": "finished", "config": cfg, "epochs": 2,
                                           "final": results.read_metrics(d)[-1],
                                           "overfit_epoch": 2, "overfit_step": 20,
                                           "num_train": 40, "num_test": 20})
    (d / "model.weights.h5").write_bytes(b"w" * 100)
    (d / "tb").mkdir()
    (d / "tb" / "events").write_bytes(b"e")
    (d / "backup").mkdir()


@pytest.fixture
def grid(monkeypatch):
    cpu = scales.SCALES["cpu"]
    monkeypatch.setitem(scales.SCALES, "cpu", dataclasses.replace(
        cpu, train_size={"mlp": 40, recipes.OTHER: 40}, test_size=20))
    return grids.figure1_points("cpu", "/data/cifar", models=("mlp_1x512",),
                                corruptions=(0.0, 1.0), parts="bc")


def test_exported_records_are_compact_and_count_as_finished(grid, tmp_path, capsys):
    runs = tmp_path / "runs"
    for p in grid:
        _finished_run(suite.run_dir(p, runs), {"train": {"model": "mlp_1x512"}, "data": {}})
    tree = tmp_path / "docs/results/figure1_cpu"
    out = report.export([suite.run_dir(p, runs) for p in grid], tree)
    assert [o.name for o in out] == [suite.run_dir(p, runs).name for p in grid]
    for d in out:
        assert sorted(f.name for f in d.iterdir()) == sorted(report.RECORD_FILES)
        suite.check_source(d)  # what a merge checks
    # a suite given the tree counts its points as finished: nothing is trained
    work = tmp_path / "work"
    assert suite.merge([tree], work) == len(grid)
    capsys.readouterr()
    again = suite.run_grid(grid, work, data_cache={})
    assert f"{len(grid)} finished already, 0 to run" in capsys.readouterr().out
    assert all(res["status"] == "finished" for _, res in again)


def test_export_refuses_unfinished_runs_and_large_examples(tmp_path, monkeypatch):
    (tmp_path / "half").mkdir()
    with pytest.raises(ValueError, match="not a finished run directory"):
        report.export([tmp_path / "half"], tmp_path / "to")
    _finished_run(tmp_path / "run", {"train": {}, "data": {}})
    (tmp_path / "run" / "examples.npz").write_bytes(b"x" * 2000)
    monkeypatch.setattr(report, "EXAMPLES_LIMIT", 1000)
    with pytest.raises(ValueError, match="export without --examples"):
        report.export([tmp_path / "run"], tmp_path / "to", examples=True)
    monkeypatch.setattr(report, "EXAMPLES_LIMIT", 10_000)
    (d,) = report.export([tmp_path / "run"], tmp_path / "to", examples=True)
    assert (d / "examples.npz").stat().st_size == 2000
    # a summary file goes with its log
    (tmp_path / "k.json").write_text("{}")
    (tmp_path / "k.log").write_text("log")
    assert sorted(p.name for p in report.export([tmp_path / "k.json"], tmp_path / "s")) == \
        ["k.json", "k.log"]


def test_results_tree_holds_no_weights_and_is_small():
    root = report.ROOT / report.RESULTS
    files = [f for f in root.rglob("*") if f.is_file()]
    assert not [f for f in files if f.suffix in (".h5", ".keras", ".ckpt") or "tb" in f.parts
                or "backup" in f.parts]
    assert sum(f.stat().st_size for f in files) < 50 << 20
    for f in files:
        if f.name == "examples.npz":
            assert f.stat().st_size <= report.EXAMPLES_LIMIT


# ---- honest pictures
class _Captured:
    def __call__(self, fig, out_dir, name):
        self.fig = fig
        return [name]


def _pairs(tmp_path, parts=("bc",)):
    from rethinkgen_tf.suite import Point
    pairs = []
    for m in ("mlp_1x512",):
        for c in (0.0, 1.0):
            d = tmp_path / f"{m}{c}"
            _finished_run(d, {"train": {"model": m, "learning_rate": 0.01, "lr_decay": 0.985,
                                        "overfit_threshold": 0.999},
                              "data": {"batch_size": 128}})
            res = {**results.load_result(d), "run_dir": str(d)}
            pairs.append((Point((("corrupt", c), ("model", m), ("part", "bc"), ("seed", 0)),
                                None, None), res))
    return pairs


def test_figure1_marks_the_paper_only_where_it_gives_values(tmp_path, monkeypatch):
    cap = _Captured()
    monkeypatch.setattr(plots, "_save", cap)
    monkeypatch.setattr(plots, "figure1_dynamics", lambda pairs, out: None)
    plots.figure1(_pairs(tmp_path), tmp_path)
    axes = cap.fig.axes
    assert len(axes) == 2  # no empty (a) panel when (a) is not in the grid
    b, c = axes
    paper = [ln for ln in c.lines if "paper" in (ln.get_label() or "")]
    assert paper and all(ln.get_linestyle() == "None" for ln in paper)
    assert list(paper[0].get_xdata()) == [0, 1]
    assert any("our reading of its figure" in ln.get_label() for ln in b.lines)
    assert "20 test images" in c.get_title()
    caption = cap.fig._suptitle.get_text()
    assert "99.9%" in caption and "x0.985 per epoch" in caption


def test_kernel_curve_shows_the_differences(tmp_path, monkeypatch):
    cap = _Captured()
    monkeypatch.setattr(plots, "_save", cap)
    summary = json.loads((report.ROOT / report.RESULTS / "kernel/cifar10_conv32000.json")
                         .read_text())
    plots.kernel_curve(summary, tmp_path / "k.png")
    (ax,) = cap.fig.axes
    lo, hi = ax.get_ylim()
    assert 10 < lo < 15 and 25 < hi < 40  # not 0-100: the points' differences are visible
    assert "one filter seed" in ax.get_title()
    ridge = [ln for ln in ax.lines if "validated ridge" in ln.get_label()]
    interp = [ln for ln in ax.lines if "interpolant" in ln.get_label()]
    assert ridge[0].get_marker() != interp[0].get_marker()
    assert ridge[0].get_markerfacecolor() == "none"
    texts = " ".join(t.get_text() for t in ax.texts)
    assert "paper: 17%" in texts and "paper: 15%" in texts


def test_kernel_curve_draws_further_runs_in_their_own_colours(tmp_path, monkeypatch):
    cap = _Captured()
    monkeypatch.setattr(plots, "_save", cap)
    R = _patch_records(tmp_path)
    gauss = R.json("kernel/cifar10_conv32000.json")
    runs = [(f"patch filters, {name}", s) for name, s in report._patch_runs(R)]
    numbers = plots.kernel_curve(gauss, tmp_path / "k.png", more=runs)
    assert numbers["test_error"] == [100 * c["test_error"] for c in sorted(gauss["curve"], key=lambda c: c["filters"])]
    (ax,) = cap.fig.axes
    interp = {ln.get_label(): ln for ln in ax.lines if "interpolant" in ln.get_label()}
    assert sorted(interp) == ["Gaussian filters: interpolant (ridge 0), true labels",
                              "patch filters, filter seed 0: interpolant (ridge 0), true labels",
                              "patch filters, filter seed 1: interpolant (ridge 0), true labels"]
    assert len({ln.get_color() for ln in interp.values()}) == 3
    seed0 = interp["patch filters, filter seed 0: interpolant (ridge 0), true labels"]
    assert list(seed0.get_xdata()) == [1024, 2048, 4096, 32000]   # the 4,096 run's points and its own
    assert "each curve one filter seed" in ax.get_title()
    texts = [t.get_text() for t in ax.texts]
    assert "18.51%" in texts and "16.88%" in texts   # the 32,000-filter run's interpolant and ridge row


def test_dynamics_example_sentence_is_from_its_record():
    R = report.Records()
    try:
        (run,) = R.runs("dynamics")
    except report.MissingRecord:
        pytest.skip("no dynamics record committed")
    text = report.dynamics_example(R)
    a = np.load(run.dir / "examples.npz")
    assert f"{int(a['corrupted'].sum()):,} labels actually" in text


@pytest.mark.slow
def test_cli_errors_are_one_line(tmp_path):
    import subprocess
    import sys
    for args, want in ((["--export=" + str(tmp_path)], "--export needs --to"),
                       (["--export=" + str(tmp_path), f"--to={tmp_path}/x"],
                        "not a finished run directory"),
                       (["--to=x"], "--to and --examples go with --export")):
        p = subprocess.run([sys.executable, "-m", "experiments.report", *args], cwd=report.ROOT,
                           capture_output=True, text=True, timeout=120)
        lines = [ln for ln in p.stderr.splitlines() if "error:" in ln]
        assert p.returncode == 1 and len(lines) == 1 and want in lines[0], p.stderr


def test_every_picture_the_docs_show_exists():
    import re
    for doc in report.DOCS:
        path = report.ROOT / doc
        for target in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", path.read_text()):
            assert (path.parent / target).is_file(), f"{doc} shows {target}, which is missing"


def _implicit_records(tmp_path):
    """Two Figure 2b records from a committed Inception run: with batch norm as it is; without
    it, a final test accuracy of 68.00% and a best epoch (5) at 90.00% in its metrics."""
    src = next(p for p in (report.ROOT / report.RESULTS / "figure1_n10000").iterdir()
               if p.name.startswith("cifar10_inception_n10000_s0"))
    root = tmp_path / "results"
    shutil.copytree(src, root / "implicit_n10000" / "bn")
    nobn = root / "implicit_n10000" / "nobn"
    shutil.copytree(src, nobn)
    cfg = json.loads((nobn / "config.json").read_text())
    cfg["train"]["batchnorm"] = False
    (nobn / "config.json").write_text(json.dumps(cfg))
    res = json.loads((nobn / "result.json").read_text())
    res["config"] = cfg
    res["final"]["test_acc"] = 0.68
    (nobn / "result.json").write_text(json.dumps(res))
    lines = (nobn / "metrics.csv").read_text().splitlines()
    head = lines[0].split(",")
    row = lines[5].split(",")
    assert int(row[0]) == 5
    row[head.index("test_acc")] = "0.9"
    lines[5] = ",".join(row)
    (nobn / "metrics.csv").write_text("\n".join(lines) + "\n")
    return root


def test_figure2b_region_reads_both_models_from_their_records(tmp_path):
    root = _implicit_records(tmp_path)
    R = report.Records(root)
    text = report.implicit_n10000(R)
    # the mean of the last 10 epochs' test accuracy, from the metrics (epoch 5 is not among them)
    tail = [float(line.split(",")[12]) for line in
            (root / "implicit_n10000" / "bn" / "metrics.csv").read_text().splitlines()[-10:]]
    mean, sd = 100 * np.mean(tail), 100 * np.std(tail)
    assert f"| Inception w/o BatchNorm | 19 | 100.00% | 68.00% | {mean:.2f}% ± {sd:.2f} | " \
           "90.00% (epoch 5) | 22.00 | 82.00% |" in text
    assert f"| Inception | 19 | 100.00% | 71.64% | {mean:.2f}% ± {sd:.2f} | 71.64% (epoch 19) | " \
           "0.00 | 85.75% |" in text
    assert "changes the final test accuracy by +3.64 points, and the mean of the last 10 epochs " \
           "by +0.00" in text
    assert "gain 0.00 points over the final epoch with batch norm and 22.00 without" in text
    assert f"and {71.64 - mean:.2f} and {90 - mean:.2f} over the last 10 epochs' mean" in text
    status = report.runplan_status(R)
    assert "| 5 | 2 of 2: with batch norm, without batch norm | done |" in status


def test_figure2b_region_marks_what_is_not_run_or_diverged(tmp_path):
    root = _implicit_records(tmp_path)
    res = json.loads((root / "implicit_n10000" / "bn" / "result.json").read_text())
    res.update(status="diverged", diverged_epoch=7)
    (root / "implicit_n10000" / "bn" / "result.json").write_text(json.dumps(res))
    text = report.implicit_n10000(report.Records(root))
    assert "| Inception | diverged at epoch 7 |" in text
    assert "points (paper" not in text  # no comparison without both models' numbers
    shutil.rmtree(root / "implicit_n10000" / "bn")
    text = report.implicit_n10000(report.Records(root))
    assert "| Inception | not run yet |" in text
    shutil.rmtree(root / "implicit_n10000" / "nobn")
    with pytest.raises(report.MissingRecord):
        report.implicit_n10000(report.Records(root))


def test_readme_states_figure2b_once_both_records_exist(tmp_path):
    root = _implicit_records(tmp_path)
    for grid in ("figure1_n10000", "figure1_paper", "table1_paper"):
        shutil.copytree(report.ROOT / report.RESULTS / grid, root / grid)
    text = report.readme_convnets(report.Records(root))
    assert ("batch norm changes small Inception's final test accuracy by +3.64 points (+0.00 "
            "over the last 10 epochs' mean; paper: +3 to 4), and stopping at the best test epoch "
            "would gain 0.00 and 22.00 points over the final one") in text
    shutil.rmtree(root / "implicit_n10000" / "nobn")
    assert "Figure 2b" not in report.readme_convnets(report.Records(root))


def test_inception_slowdown_by_n_needs_both_sizes(tmp_path):
    root = tmp_path / "results"
    shutil.copytree(report.ROOT / report.RESULTS / "figure1_n10000", root / "figure1_n10000")
    text = report.inception_figure1bc_n10000(report.Records(root))
    assert "grows with n" not in text and "| 1 (the random-labels run of (a)) | 34 |" in text
    shutil.copytree(report.ROOT / report.RESULTS / "figure1_n1000", root / "figure1_n1000")
    text = report.inception_figure1bc_n10000(report.Records(root))
    steps = {r.tags()["corrupt"]: r.result["overfit_step"]
             for r in report.Records(root).runs("figure1_n1000")}
    assert f"{steps[1.0] / steps[0.0]:.2f}x at n = 1,000 and 1.79x at n = 10,000" in text


def _patch_records(tmp_path, seeds=(0,), test=(0.1851, 0.1874), ridge=(0.1688, 0.1702)):
    """The committed kernel records plus made-up 32,000-patch-filter summaries for `seeds`."""
    root = tmp_path / "results"
    shutil.copytree(report.ROOT / report.RESULTS / "kernel", root / "kernel")
    for name in ("cifar10_patches32000.json", "cifar10_patches32000_fs1.json"):
        (root / "kernel" / name).unlink(missing_ok=True)     # the committed ones, as they land
    for seed in seeds:
        small = json.loads((root / "kernel" / ("cifar10_patches4096.json" if seed == 0 else
                                               "cifar10_patches4096_fs1.json")).read_text())
        big = dict(small, conv_filters=32000, curve=small["curve"] + [
            dict(small["curve"][-1], filters=32000, test_error=test[seed], ridge_test_error=ridge[seed])])
        big["results"] = dict(small["results"], true=dict(small["results"]["true"], test_error=test[seed]),
                              true_ridge=dict(small["results"]["true_ridge"], test_error=ridge[seed]))
        name = "cifar10_patches32000.json" if seed == 0 else "cifar10_patches32000_fs1.json"
        (root / "kernel" / name).write_text(json.dumps(big))
    return report.Records(root)


def test_patch_filter_regions_take_the_32000_filter_runs_as_they_land(tmp_path):
    R = _patch_records(tmp_path / "none", seeds=())
    assert "not run yet" in report.kernel_patch_prose(R)
    assert "in the run plan" in report.readme_kernel_patches32000(R)
    one = _patch_records(tmp_path / "one")
    table = report.kernel_patch_curve_table(one)
    assert "| 32,000 | 18.51% | — | — | 23.83% |" in table          # seed 1 has no 32,000 point
    assert "| validated ridge at each seed's largest | 16.88% (ridge 0.01, 32,000 filters) | " \
           "20.42% (ridge 0.01, 4,096 filters) | — | — |" in table  # no mean across sizes
    prose = report.kernel_patch_prose(one)
    assert "**18.51%** test error interpolating and **16.88%** with the validated ridge" in prose
    assert "the interpolant is within the project's target of at most 19%, the ridge row within" in prose
    assert "Filter seed 1 at 32,000 is in the run plan" in prose
    both = _patch_records(tmp_path / "both", seeds=(0, 1), test=(0.1851, 0.1921))
    table = report.kernel_patch_curve_table(both)
    assert "| 32,000 | 18.51% | 19.21% | 18.86% ± 0.35 | 23.83% |" in table
    assert "| validated ridge at 32,000 | 16.88% (ridge 0.01) | 17.02% (ridge 0.01) | 16.95% ± 0.07 | — |" in table
    prose = report.kernel_patch_prose(both)
    assert "the interpolant is above the project's target of at most 19%, the ridge row above" in prose
    assert "run plan" not in prose
    assert "(filter seeds 0 and 1) the test error is 18.51% and 19.21% interpolating" in \
        report.readme_kernel_patches32000(both)
    assert "| random conv, patch filters, 32,000, filter seed 1 | 50,000 / 10,000 | 19.21%" in \
        report.kernel_table(both)


def test_ridge_scaled_rows_sit_beside_the_ridge_as_chosen(tmp_path):
    R = _patch_records(tmp_path / "none", seeds=())
    assert "No full-scale run has been rerun" in report.kernel_ridge_n_table(R)
    R = _patch_records(tmp_path / "one", seeds=(0,))
    kernel = R.root / "kernel"
    big = json.loads((kernel / "cifar10_patches32000.json").read_text())
    scaled = dict(big, ridge_scaling="n", results=dict(big["results"], true_ridge=dict(
        big["results"]["true_ridge"], ridge=0.05, test_error=0.1702, train_error=0.0031)))
    (kernel / "cifar10_patches32000_ridge_n.json").write_text(json.dumps(scaled))
    table = report.kernel_ridge_n_table(report.Records(R.root))
    assert "| patch filters, 32,000, filter seed 0 | 50,000 / 10,000 | 10,000 | 16.88% (ridge 0.01, " in table
    assert "| 17.02% (ridge 0.05, train error 0.31%) | `kernel/cifar10_patches32000_ridge_n.json` |" in table
    assert "filter seed 1" not in table                      # no scaled rerun: no row
    assert "Patch filters, 32,000, filter seed 0: the scaled ridge is 0.14 points worse (one test " \
           "error's standard error is about 0.4 points)." in table


def test_steps_order_names_each_neighbouring_pair_that_fits_faster():
    run = lambda step: types.SimpleNamespace(result={"overfit_step": step})  # noqa: E731
    assert report._steps_order({0.0: run(100), 1.0: run(200)}) == ""          # too few points
    grows = report._steps_order({0.0: run(100), 0.2: run(150), 1.0: run(300), 0.4: run(None)})
    assert grows.startswith("Over the finished points (p = 0, 0.2, 1) the steps to fit grow with p")
    text = report._steps_order({0.0: run(1501), 0.6: run(2923), 0.8: run(2800), 1.0: run(2686)})
    assert "p = 0.8 fits in fewer steps (2,800) than p = 0.6 (2,923); p = 1 fits in fewer steps " \
           "(2,686) than p = 0.8 (2,800)" in text


def test_readme_gives_grid_4_once_every_p_has_a_record(tmp_path):
    text = report.readme_convnets(report.Records())
    assert "it fits every p in 1.00 / 1.32 / 1.42 / 1.95 / 1.79 / 1.79x the steps of p = 0 (not growing" in text
    root = tmp_path / "results"
    shutil.copytree(report.ROOT / report.RESULTS, root)
    for d in (root / "figure1_n10000").glob("*corrupt0.6*"):
        shutil.rmtree(d)
    text = report.readme_convnets(report.Records(root))
    assert "Across label corruption" not in text and "fits every input of Figure 1 (a)" in text
