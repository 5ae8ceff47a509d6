"""The randomization test on MNIST or Fashion-MNIST (28x28x1, no crop by default).

    python -m experiments.mnist --model=mlp_1x512 --randomize=labels
    python -m experiments.mnist --dataset=fashion_mnist --data_dir=/usr/share/datasets/fashion-mnist
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep errors one line

from absl import app, flags as absl_flags  # noqa: E402

from rethinkgen_tf import flags  # noqa: E402

if __name__ == "__main__":
    flags.define(datasets=("mnist", "fashion_mnist"), model="mlp_1x512")
    absl_flags.adopt_module_key_flags(flags)  # list them in --help
    app.run(flags.main)
