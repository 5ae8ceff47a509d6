"""Figure 2b of the paper: small Inception with and without batch norm on CIFAR-10,
no explicit regularizers; train and test accuracy vs steps, with the best test
accuracy so far shaded (what early stopping could give).

    python -m experiments.implicit --scale=cpu --data_dir=/path/to/cifar10
"""
from absl import flags

from rethinkgen_tf import entry, grids, plots, suite

suite.define_flags("runs/implicit")
flags.adopt_module_key_flags(suite)
flags.DEFINE_list("models", ["inception"], "Models to compare with and without batch norm: "
                  "inception, or your own as module:function (its builder takes batchnorm).")


def points(F):
    return grids.implicit_points(suite.scale_of(F), F.data_dir, seed=F.seed, seeds=F.seeds,
                                 models=F.models, dataset=F.dataset, recipe=F.recipe)


if __name__ == "__main__":
    entry.run(lambda argv: suite.main(points, plots.implicit))
