"""The Python API (rethinkgen_tf.api): the README's example runs as written, resumes
without training, and its one-line errors."""
import os
import re
from pathlib import Path

import numpy as np
import pytest

import rethinkgen_tf as rg
from rethinkgen_tf import api

ROOT = Path(__file__).resolve().parents[1]


def readme_example():
    text = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- api-example -->\n```python\n(.*?)```\n<!-- /api-example -->",
                      text, re.S)
    assert block, "README.md lost its <!-- api-example --> block"
    return block.group(1)


@pytest.mark.slow
def test_the_readme_example_runs_and_resumes(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code = readme_example()
    ns = {"__name__": "readme_example"}
    exec(compile(code, "README.md:api-example", "exec"), ns)
    res = ns["res"]
    assert [(r["randomization"], r["p"], r["seed"]) for r in res] == \
        [("none", 0.0, 0), ("labels", 1.0, 0), ("labels", 0.5, 0)]
    for r in res:
        assert r["status"] == "finished" and 1 <= r["epochs"] <= 20
        assert 0.0 <= r["test_acc"] <= 1.0 and Path(r["run_dir"]).parent == Path("runs/api")
    assert res[0]["epochs_to_fit"] is not None and res[0]["train_acc"] == 1.0  # true labels fit
    csv = (tmp_path / "runs/api/results.csv").read_text().splitlines()
    assert csv[0] == ",".join(api.COLUMNS) and len(csv) == 4
    assert (tmp_path / "runs/api/figure1.png").stat().st_size > 0
    assert "epochs_to_fit" in capsys.readouterr().out
    # again: the finished runs come back as they are, nothing is trained
    stamps = {r["run_dir"]: os.stat(Path(r["run_dir"]) / "result.json").st_mtime_ns for r in res}
    again = rg.randomization_test(ns["build"], ns["data"], randomizations=["none", "labels"],
                                  corruptions=[0.5], epochs=20, learning_rate=0.05,
                                  lr_decay=0.95, output_dir="runs/api", verbose=False)
    assert list(again) == list(res)
    assert stamps == {r["run_dir"]: os.stat(Path(r["run_dir"]) / "result.json").st_mtime_ns
                      for r in again}


def tiny_build(input_shape, num_classes):
    import keras
    return keras.Sequential([keras.Input(input_shape), keras.layers.Flatten(),
                             keras.layers.Dense(num_classes)])


@pytest.mark.parametrize("kwargs, fragment", [
    (dict(model=tiny_build, data=(1, 2)), "pass (x_train, y_train, x_test, y_test)"),
    (dict(model=tiny_build, data="/nonexistent/dir"), "does not exist"),
    (dict(model=tiny_build, data=3.5), "data: a float"),
    (dict(model=7, data="/tmp"), "model: a int"),
    (dict(model="mlp_1x8", data="/tmp", recipe="mlp"), "are for your own model"),
    (dict(model=tiny_build, data="/tmp", randomizations=["labelz"]), "unknown ['labelz']"),
    (dict(model=tiny_build, data="/tmp", corruptions=[1.5]), "not probabilities"),
])
def test_bad_arguments_are_one_line(kwargs, fragment):
    with pytest.raises(ValueError) as e:
        rg.randomization_test(**kwargs)
    assert fragment in str(e.value) and "\n" not in str(e.value)


def test_a_built_model_and_a_missing_recipe_are_refused(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (40, 8, 8, 1), np.uint8), rng.integers(0, 2, 40)
    data = (x[:32], y[:32], x[32:], y[32:])
    with pytest.raises(ValueError, match="not a built keras.Model"):
        rg.randomization_test(tiny_build((8, 8, 1), 2), data, output_dir=tmp_path)
    with pytest.raises(ValueError, match="no built-in training recipe: pass --recipe=FAMILY"):
        rg.randomization_test(tiny_build, data, epochs=2, output_dir=tmp_path)
    assert not list(tmp_path.iterdir())  # refused before any run directory
