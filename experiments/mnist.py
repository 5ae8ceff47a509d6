"""The randomization test on MNIST or Fashion-MNIST (28x28x1, no crop by default).

    python -m experiments.mnist --model=mlp_1x512 --randomize=labels
    python -m experiments.mnist --dataset=fashion_mnist --data_dir=/usr/share/datasets/fashion-mnist
"""
from absl import flags as absl_flags

from rethinkgen_tf import cli, entry

if __name__ == "__main__":
    cli.define(datasets=("mnist", "fashion_mnist"), model="mlp_1x512")
    absl_flags.adopt_module_key_flags(cli)  # list them in --help
    entry.run(cli.main)
