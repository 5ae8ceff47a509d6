"""Your model (module:function) and your data (class folders, a .npz) in single runs and
the suites: the builder contract's one-line errors, the explicit recipe, the
architecture in the run's identity."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rethinkgen_tf import grids, models, suite, user_model
from rethinkgen_tf.train import TrainConfig

ROOT = Path(__file__).resolve().parents[1]

TINY = """
import keras
from keras import layers


def build(input_shape, num_classes, dropout=0.0, batchnorm=False):
    x = inputs = keras.Input(input_shape)
    x = layers.Flatten()(x)
    x = layers.Dense(WIDTH)(x)
    if batchnorm:
        x = layers.BatchNormalization()(x)
    x = layers.Dropout(dropout)(layers.ReLU()(x))
    return keras.Model(inputs, layers.Dense(num_classes)(x))


def plain(input_shape, num_classes):
    return keras.Sequential([keras.Input(input_shape), layers.Flatten(), layers.Dense(num_classes)])


def anything(input_shape, num_classes, **options):
    anything.seen = options
    return plain(input_shape, num_classes)


def factory():
    return keras.Sequential([keras.Input((16, 16, 3)), layers.Flatten(), layers.Dense(3)])


def softmax(input_shape, num_classes):
    return keras.Sequential([keras.Input(input_shape), layers.Flatten(),
                             layers.Dense(num_classes, activation="softmax")])


def wrong_classes(input_shape, num_classes):
    return plain(input_shape, num_classes + 1)


def not_keras(input_shape, num_classes):
    return "a model"


def wrong_input(input_shape, num_classes):
    return plain((7, 7, 1), num_classes)


NOT_CALLABLE = 3
"""


def write_package(root, width=8):
    """mynets/tiny.py under root (the user's package); returns root."""
    pkg = root / "mynets"
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "tiny.py").write_text(f"WIDTH = {width}\n" + TINY)
    (pkg / "broken.py").write_text("raise RuntimeError('no GPU here')\n")
    return root


def write_folders(root, size=16, classes=3, train=12, test=4):
    """A class-folder dataset: `classes` classes of size x size RGB PNGs."""
    import tensorflow as tf
    rng = np.random.default_rng(0)
    for split, n in (("train", train), ("test", test)):
        for k in range(classes):
            d = root / split / f"kind{k}"
            d.mkdir(parents=True)
            for i in range(n):
                png = tf.io.encode_png(rng.integers(0, 256, (size, size, 3), np.uint8))
                (d / f"{i}.png").write_bytes(png.numpy())
    return root


@pytest.fixture(scope="module")
def pkg(tmp_path_factory):
    root = write_package(tmp_path_factory.mktemp("pkg"))
    sys.path.insert(0, str(root))
    yield root
    sys.path.remove(str(root))
    for name in [m for m in sys.modules if m == "mynets" or m.startswith("mynets.")]:
        del sys.modules[name]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return write_folders(tmp_path_factory.mktemp("data") / "mydata")


def command(module, pythonpath, *args):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(pythonpath)])}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def error_line(p):
    """The one line a failed command printed (its stderr holds nothing else of ours)."""
    assert p.returncode == 1, p.stdout + p.stderr
    lines = [line for line in p.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, p.stderr
    assert "Traceback" not in p.stderr
    return lines[0]


# ---------------------------------------------------------------- the contract


@pytest.mark.parametrize("ref, fragment", [
    ("mynets.nosuch:build", "cannot import mynets.nosuch (ModuleNotFoundError"),
    ("nosuchpkg.tiny:build", "put its folder on PYTHONPATH"),
    ("mynets.broken:build", "cannot import mynets.broken (RuntimeError: no GPU here)"),
    ("mynets.tiny:nothere", "has no attribute 'nothere'"),
    ("mynets.tiny:NOT_CALLABLE", "NOT_CALLABLE is a int, not a function"),
    ("mynets.tiny:not_keras", "returned str, not a keras.Model"),
    ("mynets.tiny:wrong_classes", "output has shape (None, 4), expected (None, 3)"),
    ("mynets.tiny:wrong_input", "fails on a batch of images of shape (16, 16, 3)"),
    ("mynets.tiny:softmax", "outputs probabilities (a softmax at the end); return logits"),
    ("mynets.tiny:", "a model given by reference is module:function"),
])
def test_contract_errors_are_one_line(pkg, ref, fragment):
    with pytest.raises(ValueError) as e:
        models.build(ref, (16, 16, 3), 3)
    message = str(e.value)
    assert fragment in message
    assert "\n" not in message and message.startswith("model ") and ref in message


def test_options_are_passed_only_where_the_builder_takes_them(pkg):
    from mynets import tiny
    model = models.build("mynets.tiny:build", (16, 16, 3), 3, batchnorm=True, dropout=0.25)
    assert any(type(layer).__name__ == "BatchNormalization" for layer in model.layers)
    assert [layer.rate for layer in model.layers if type(layer).__name__ == "Dropout"] == [0.25]
    models.build("mynets.tiny:plain", (16, 16, 3), 3, batchnorm=None, dropout=0.0)  # none set
    with pytest.raises(ValueError, match="dropout=0.5 is set, but its builder takes no 'dropout'"):
        models.build("mynets.tiny:plain", (16, 16, 3), 3, dropout=0.5)
    with pytest.raises(ValueError, match="batchnorm=True is set"):
        models.build("mynets.tiny:plain", (16, 16, 3), 3, batchnorm=True)
    models.build("mynets.tiny:anything", (16, 16, 3), 3, batchnorm=False, dropout=0.0,
                 bn_momentum=None)
    assert tiny.anything.seen == {"batchnorm": False, "dropout": 0.0}  # None: not set, not passed
    assert models.build("mynets.tiny:factory", (16, 16, 3), 3).output_shape == (None, 3)
    # weight decay reaches the user's kernels like the built-in models'
    wd = models.build("mynets.tiny:plain", (16, 16, 3), 3, weight_decay=0.1)
    assert [v.regularizer is not None for v in wd.trainable_weights] == [True, False]


def test_the_recipe_is_explicit(pkg):
    with pytest.raises(ValueError, match=r"no built-in training recipe: pass --recipe=FAMILY"):
        TrainConfig(model="mynets.tiny:build")
    with pytest.raises(ValueError, match="--learning_rate, --lr_decay"):
        TrainConfig(model="mynets.tiny:build", epochs=3)
    mlp = TrainConfig(model="mynets.tiny:build", recipe="mlp").resolved()
    assert (mlp.learning_rate, mlp.lr_decay, mlp.epochs) == (0.01, 0.985, 200)
    own = TrainConfig(model="mynets.tiny:build", learning_rate=0.3, lr_decay=0.9, epochs=4)
    assert (own.resolved().learning_rate, own.resolved().lr_decay) == (0.3, 0.9)
    with pytest.raises(ValueError, match="--recipe=mlp is for models given by reference"):
        TrainConfig(model="alexnet", recipe="mlp")
    assert TrainConfig(model="alexnet", recipe="alexnet") == TrainConfig(model="alexnet")
    with pytest.raises(ValueError, match="recipe must be one of"):
        TrainConfig(model="mynets.tiny:build", recipe="resnet")


def test_architecture_ignores_names_and_dtypes(pkg):
    import keras
    a = models.build("mynets.tiny:build", (16, 16, 3), 3)
    b = models.build("mynets.tiny:build", (16, 16, 3), 3, weight_decay=5e-4)  # other names
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        c = models.build("mynets.tiny:build", (16, 16, 3), 3)
    finally:
        keras.config.set_dtype_policy("float32")
    assert user_model.architecture(a) == user_model.architecture(b) == user_model.architecture(c)
    for other in (models.build("mynets.tiny:build", (16, 16, 3), 4),
                  models.build("mynets.tiny:build", (16, 16, 3), 3, batchnorm=True),
                  models.build("mynets.tiny:plain", (16, 16, 3), 3)):
        assert user_model.architecture(other) != user_model.architecture(a)


def test_built_in_keys_leave_the_architecture_out():
    t, d = grids.configs("mlp_1x512", "cpu", "/data")
    assert t.model_arch is None and t.recipe is None
    assert "model_arch" not in json.dumps(suite._non_default(t))


# ---------------------------------------------------------------- your data in the grids


def test_grids_take_your_model_and_data(pkg, folders):
    pts = grids.figure1_points("cpu", str(folders), models=["mynets.tiny:build", "mlp_1x512"],
                               loss_model="mynets.tiny:build", dataset="folder", recipe="mlp")
    assert len(pts) == 5 + 2 * 6
    for p in pts:
        assert (p.data.dataset, p.data.crop) == ("folder", None)
        # the cpu rule on 16x16x3 = 768 values asks for 5,000 examples: all 36 there are
        assert (p.data.train_size, p.data.test_size) == (None, None)
        mine = p.tag["model"] == "mynets.tiny:build"
        assert (p.train.recipe, p.train.model_arch is not None) == (("mlp", True) if mine
                                                                   else (None, False))
    keys = {tuple(sorted(p.tag.items())): suite.config_key(p) for p in pts}
    assert len(set(keys.values())) == len(pts) - 1  # (a) true labels is (b, c) p = 0: one run
    mine = (("model", "mynets.tiny:build"), ("seed", 0))
    assert keys[(*mine[:1], ("part", "a"), ("randomize", "none"), mine[1])] == \
        keys[(("corrupt", 0.0), *mine[:1], ("part", "bc"), mine[1])]
    rows = grids.table1_points("cpu", str(folders), ["mynets.tiny:build", "mlp_1x512"],
                               dataset="folder", recipe="mlp")
    assert sorted((p.tag["model"], p.tag["crop"], p.tag["wd"], p.tag["random_labels"])
                  for p in rows) == sorted(
        [("mlp_1x512", False, True, False), ("mlp_1x512", False, False, False),
         ("mlp_1x512", False, False, True), ("mynets.tiny:build", False, True, False),
         ("mynets.tiny:build", False, False, False), ("mynets.tiny:build", False, False, True)])
    bn = grids.implicit_points("cpu", str(folders), models=["mynets.tiny:build"],
                               dataset="folder", recipe="mlp")
    assert [p.train.batchnorm for p in bn] == [True, False]
    assert bn[0].train.model_arch != bn[1].train.model_arch
    with pytest.raises(ValueError, match="no built-in training recipe"):
        grids.figure1_points("cpu", str(folders), models=["mynets.tiny:build"], parts="bc",
                             dataset="folder")


def test_cpu_rule_follows_the_datas_input_dimension(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (12_000, 8, 8, 1), np.uint8), np.arange(12_000) % 4
    np.savez(tmp_path / "d.npz", x_train=x[:11_000], y_train=y[:11_000], x_test=x[11_000:],
             y_test=y[11_000:])
    pts = grids.figure1_points("cpu", str(tmp_path / "d.npz"), models=["mlp_1x512"],
                               parts="bc", dataset="numpy")
    # 8x8x1 = 64 values: n >= 256 -> 500 (the smallest round size); the 1,000 test images
    assert {(p.data.train_size, p.data.balanced, p.data.test_size) for p in pts} == \
        {(500, True, None)}
    assert grids.cpu_train_size("mlp", 28 * 28 * 3) == 10_000  # CIFAR-10's, as scales has it
    assert grids.cpu_train_size("inception", 64) == 500


# ---------------------------------------------------------------- end to end


@pytest.mark.slow
def test_single_run_and_builder_changed_refusal(tmp_path, folders):
    pkg = write_package(tmp_path / "pkg")
    args = ["--model=mynets.tiny:build", "--recipe=mlp", "--dataset=folder",
            f"--data_dir={folders}", f"--output_dir={tmp_path / 'runs'}", "--epochs=2"]
    p = command("experiments.cifar", pkg, *args)
    assert p.returncode == 0, p.stderr
    run = tmp_path / "runs" / "folder_mynets.tiny-build_s0"
    assert str(run) in p.stdout and "2 epochs" in p.stdout
    config = json.loads((run / "config.json").read_text())
    arch = config["train"]["model_arch"]
    assert config["train"]["recipe"] == "mlp" and len(arch) == 12
    assert config["train"]["learning_rate"] == 0.01
    result = json.loads((run / "result.json").read_text())
    assert (result["num_train"], result["num_test"]) == (36, 12)
    # the builder changed: the run is not resumed nor reused
    write_package(tmp_path / "pkg", width=9)
    line = error_line(command("experiments.cifar", pkg, *args))
    assert f"{run} holds a finished run with a different config" in line
    assert "the architecture of model mynets.tiny:build (its builder changed" in line
    assert arch in line
    # no recipe: one line
    line = error_line(command("experiments.cifar", pkg, *args[:1], *args[2:]))
    assert "no built-in training recipe: pass --recipe=FAMILY" in line


SUITE = ["--recipe=mlp", "--dataset=folder", "--max_epochs=1", "--train_size=24"]


@pytest.mark.slow
def test_figure1_with_your_model_and_data(tmp_path, folders):
    pkg = write_package(tmp_path / "pkg")
    out = tmp_path / "figure1"
    # the command: all three panels, (a) with your model too (no --loss_model)
    p = command("experiments.figure1", pkg, "--models=mynets.tiny:build",
                f"--output_dir={out}", f"--data_dir={folders}", *SUITE)
    assert p.returncode == 0, p.stderr
    assert "10 runs in the grid" in p.stdout  # (a): 5 randomizations, (b, c): 6 p, p = 0 shared
    assert (out / "figure1.png").exists()
    assert sorted(r.parent.name.split("_n24_s0-")[0] for r in out.glob("*/result.json")) == sorted(
        ["folder_mynets.tiny-build" + k for k in (
            "", "_labels", "_shuffled_pixels", "_random_pixels", "_gaussian",
            "_corrupt0.2", "_corrupt0.4", "_corrupt0.6", "_corrupt0.8", "_corrupt1")])
    runs = sorted(out.glob("folder_mynets.tiny-build*/result.json"))
    r = json.loads(runs[0].read_text())
    assert (r["num_train"], r["num_test"], r["epochs"]) == (24, 12, 1)
    assert r["config"]["data"]["crop"] is None and r["config"]["train"]["model_arch"]


@pytest.mark.slow
def test_table1_with_your_model_and_data(tmp_path, folders):
    pkg = write_package(tmp_path / "pkg")
    out = tmp_path / "table1"
    p = command("experiments.table1", pkg, "--models=mynets.tiny:build",
                f"--output_dir={out}", f"--data_dir={folders}", *SUITE)
    assert p.returncode == 0, p.stderr
    table = (out / "table1.md").read_text()
    assert table.count("mynets.tiny:build") == 3  # true labels, weight decay, random labels
    assert len(list(out.glob("folder_mynets.tiny-build*/result.json"))) == 3
