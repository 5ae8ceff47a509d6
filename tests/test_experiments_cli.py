"""The entry points: flags -> configs, one-line errors, end-to-end runs."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from absl import flags as absl_flags
from tiny import write_class_folders

from rethinkgen_tf import cli

ROOT = Path(__file__).resolve().parents[1]
FASHION = Path("/usr/share/datasets/fashion-mnist")
FLAGS = absl_flags.FLAGS


def command(module, *args):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture
def parse():
    if "corrupt" not in FLAGS:
        cli.define(("cifar10",), "inception")

    def parse(*args):
        FLAGS.unparse_flags()
        FLAGS(["prog", *args])
        return cli.configs()

    yield parse
    FLAGS.unparse_flags()


def test_flags_to_configs(parse):
    cfg, data, run_dir = parse("--corrupt=0.5")
    assert (cfg.model, data.corrupt, data.crop, data.batch_size) == ("inception", 0.5, 28, 128)
    assert (cfg.lr_decay, cfg.momentum, cfg.weight_decay, cfg.epochs) == (None, 0.9, 0.0, None)
    assert cfg.resolved().lr_decay == 0.95
    assert cfg.resolved().learning_rate == 0.1
    assert run_dir == Path("runs/cifar10_inception_corrupt0.5_s0")
    cfg, data, run_dir = parse(
        "--model=alexnet", "--randomize=shuffled_pixels", "--seed=3", "--weight_decay=5e-4",
        "--augment=crop", "--batch_size=64", "--epochs=7", "--learning_rate=0.02",
        "--nobatchnorm", "--strategy=mirrored", "--output_dir=/o", "--data_seed=9")
    assert (cfg.model, cfg.seed, cfg.weight_decay, cfg.epochs, cfg.learning_rate) == \
           ("alexnet", 3, 5e-4, 7, 0.02)
    assert (cfg.batchnorm, cfg.strategy) == (False, "mirrored")
    assert (data.randomize, data.seed, data.shuffle_seed, data.augment, data.batch_size) == \
           ("shuffled_pixels", 9, 3, "crop", 64)
    assert run_dir == Path("/o/cifar10_alexnet_shuffled_pixels_nobn_wd0.0005_crop_s3")


@pytest.mark.parametrize("args", [["--corrupt=1.5"], ["--corrupt=-0.1"], ["--epochs=-1"],
                                  ["--randomize=pixels"], ["--batch_size=0"], ["--nosuchflag"]])
def test_invalid_flags(parse, args):
    with pytest.raises(absl_flags.Error):
        parse(*args)


@pytest.mark.parametrize("args", [["--model=resnet"], ["--randomize=labels", "--corrupt=0.5"],
                                  ["--model=mlp_1x8", "--strategy=default", "--dropout=0.99",
                                   "--lr_decay=0"]])
def test_invalid_configs(parse, args):
    with pytest.raises(ValueError):
        parse(*args)


@pytest.mark.slow
def test_errors_are_one_line():
    # Exactly one line on stderr, whatever the CPU: TensorFlow's load-time C++
    # log lines (oneDNN on AVX-512 machines) are not shown (rethinkgen_tf.entry).
    for args in (["--corrupt=2"], ["--model=resnet"], ["--nosuchflag"]):
        p = command("experiments.cifar", *args)
        assert p.returncode == 1 and p.stdout == "", p
        assert len(p.stderr.splitlines()) == 1 and p.stderr.startswith("error: "), p.stderr


@pytest.mark.parametrize("onednn", ["0", "1"])
@pytest.mark.slow
def test_help_shows_only_our_output_with_onednn_on_and_off(onednn):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_ENABLE_ONEDNN_OPTS": onednn}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    p = subprocess.run([sys.executable, "-m", "experiments.cifar", "--helpshort"], cwd=ROOT,
                       env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0 and p.stderr == "", p.stderr
    assert "--corrupt" in p.stdout


@pytest.mark.slow
def test_import_quiet_keeps_other_stderr_lines():
    code = ("import os, sys; os.write(2, b'real problem\\n'); "
            "from rethinkgen_tf import entry; print(entry.is_noise('WARNING: All log messages "
            "before absl::InitializeLog() is called are written to STDERR'))")
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert p.stdout.strip() == "True" and "real problem" in p.stderr


def test_help_text(parse):
    text = FLAGS.module_help(cli)
    for name in ("corrupt", "randomize", "model", "epochs", "strategy", "weight_decay"):
        assert f"--{name}" in text
    assert "label corruption probability" in text.lower()


@pytest.mark.slow
def test_cifar_end_to_end(tmp_path):
    write_class_folders(tmp_path / "data")
    args = [f"--data_dir={tmp_path / 'data'}", "--model=mlp_1x32", "--epochs=2",
            "--batch_size=8", "--randomize=labels", f"--output_dir={tmp_path / 'runs'}"]
    p = command("experiments.cifar", *args)
    assert p.returncode == 0, p.stderr
    run_dir = tmp_path / "runs" / "cifar10_mlp_1x32_labels_s0"
    assert str(run_dir) in p.stdout and "test acc" in p.stdout
    assert "epoch 2 step 8" in p.stderr  # one log line per epoch
    result = json.loads((run_dir / "result.json").read_text())
    assert result["epochs"] == 2 and result["corrupt"] == 1.0
    p = command("experiments.cifar", *args)  # finished: not redone
    assert p.returncode == 0 and "finished already" in p.stderr
    assert json.loads((run_dir / "result.json").read_text()) == result


@pytest.mark.skipif(not FASHION.exists(), reason="needs Debian package dataset-fashion-mnist")
@pytest.mark.slow
def test_mnist_end_to_end(tmp_path):
    p = command("experiments.mnist", "--dataset=fashion_mnist", f"--data_dir={FASHION}",
            "--model=mlp_1x32", "--epochs=1", "--train_size=512", "--test_size=256",
            f"--output_dir={tmp_path}", "--run_name=fm")
    assert p.returncode == 0, p.stderr
    result = json.loads((tmp_path / "fm" / "result.json").read_text())
    assert result["dataset"] == "fashion_mnist" and result["num_train"] == 512
    assert result["final"]["test_acc"] > 0.3  # true labels: well above chance
