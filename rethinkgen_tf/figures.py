"""The paper's experiment suite: which runs each figure and table needs, at
which scale, and the paper's numbers to compare with.

    grid = figure1_points("cpu", data_dir="...")
    suite.run_grid(grid, "runs/figure1")
    plots.figure1(suite.collect(grid, "runs/figure1"), "runs/figure1")

Scales (docs/experiments.md has the table):
  paper  full CIFAR-10, the paper's schedules (lr x0.95 per epoch, batch 128,
         per-model default epochs).
  cpu    the first `train_size` examples (class-balanced) and `test_size`
         test images, chosen so a figure finishes in about an hour on a
         2-core CPU; the learning-rate decay per epoch is rescaled to
         0.95 ** (train_size / 50000), which keeps the paper's decay per
         *step*, so the schedule in steps is the paper's.
"""
import dataclasses

from rethinkgen_tf.data import DataConfig
from rethinkgen_tf.suite import point
from rethinkgen_tf.train import TrainConfig

FIG1_MODELS = ("inception", "alexnet", "mlp_1x512")
FIG1_RANDOMIZATIONS = ("none", "labels", "shuffled_pixels", "random_pixels", "gaussian")
CORRUPTIONS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)

# --scale=cpu: subset sizes and epoch caps per model family.
CPU_TRAIN_SIZE = {"mlp": 2000, "alexnet": 1000, "inception": 500, "wrn": 500}
CPU_TEST_SIZE = 2000
# Figure 1 b, c at --scale=cpu: the test set (4x Inception's training subset) every 10 epochs
# and at the last; it does not change the trained model (nor the run's key).
CPU_TEST_EVERY = 10
CPU_MAX_EPOCHS = {"mlp": 300, "alexnet": 300, "inception": 300, "wrn": 300}
# Table 1 at --scale=cpu: stop once the training set is fit (what the table's train column
# reports), at the latest after these many epochs (runs with random crops or weight decay may
# stay just below 100%): 300 epochs for each of 19 runs would take a day on 2 cores.
CPU_TABLE_EPOCHS = {"mlp": 100, "alexnet": 60, "inception": 60, "wrn": 60}
PAPER_DECAY = 0.95
BN_FAMILIES = ("inception", "wrn")  # batch norm on by default

# Table 1 of the paper: (model, random crop, weight decay, random labels) -> (train, test) %.
TABLE1 = {
    ("inception", True, True, False): (100.0, 89.05),
    ("inception", True, False, False): (100.0, 89.31),
    ("inception", False, True, False): (100.0, 86.03),
    ("inception", False, False, False): (100.0, 85.75),
    ("inception", False, False, True): (100.0, 9.78),
    ("inception_nobn", False, True, False): (100.0, 83.00),
    ("inception_nobn", False, False, False): (100.0, 82.00),
    ("inception_nobn", False, False, True): (100.0, 10.12),
    ("alexnet", True, True, False): (99.90, 81.22),
    ("alexnet", True, False, False): (99.82, 79.66),
    ("alexnet", False, True, False): (100.0, 77.36),
    ("alexnet", False, False, False): (100.0, 76.07),
    ("alexnet", False, False, True): (99.82, 9.86),
    ("mlp_3x512", False, True, False): (100.0, 53.35),
    ("mlp_3x512", False, False, False): (100.0, 52.39),
    ("mlp_3x512", False, False, True): (100.0, 10.48),
    ("mlp_1x512", False, True, False): (99.80, 50.39),
    ("mlp_1x512", False, False, False): (100.0, 50.51),
    ("mlp_1x512", False, False, True): (99.34, 10.61),
}
TABLE1_MODELS = ("inception", "inception_nobn", "alexnet", "mlp_3x512", "mlp_1x512")
WEIGHT_DECAY = 5e-4  # the reproductions' coefficient (SPEC section 4)

# Table 4 (random labels with regularizers, train accuracy %; None: fails to converge).
TABLE4 = {
    ("inception", "weight_decay"): 100.0,
    ("alexnet", "weight_decay"): None,
    ("mlp_3x512", "weight_decay"): 100.0,
    ("mlp_1x512", "weight_decay"): 99.21,
    ("inception", "random_crop"): 99.93,
    ("inception", "augmentation"): 99.28,
}


def family(model):
    from rethinkgen_tf import models
    return models.family(model)


def configs(model, scale, data_dir, seed=0, **data_overrides):
    """(TrainConfig, DataConfig) for one CIFAR-10 run at `scale`."""
    batchnorm = False if model == "inception_nobn" else None
    name = "inception" if model == "inception_nobn" else model
    data = DataConfig(dataset="cifar10", data_dir=data_dir, seed=seed, shuffle_seed=seed)
    train = TrainConfig(model=name, batchnorm=batchnorm, seed=seed)
    if scale == "cpu":
        fam = family(name)
        n = CPU_TRAIN_SIZE.get(fam, 1000)
        data = dataclasses.replace(data, train_size=n, balanced=True, test_size=CPU_TEST_SIZE)
        train = dataclasses.replace(train, epochs=CPU_MAX_EPOCHS.get(fam, 300),
                                    lr_decay=PAPER_DECAY ** (n / 50_000))
        if fam in BN_FAMILIES and batchnorm is not False:
            from rethinkgen_tf.models import BN_MOMENTUM
            train = dataclasses.replace(train, bn_momentum=round(BN_MOMENTUM ** (50_000 / n), 4))
    elif scale != "paper":
        raise ValueError(f"unknown scale {scale!r}; choose paper or cpu")
    return train, dataclasses.replace(data, **data_overrides)


def figure1_points(scale, data_dir, models=FIG1_MODELS, loss_model="inception", seed=0,
                   corruptions=CORRUPTIONS, parts="abc"):
    """(a) five randomizations of `loss_model`; (b, c) label corruption sweeps."""
    pts = []
    if "a" in parts:
        for r in FIG1_RANDOMIZATIONS:
            t, d = configs(loss_model, scale, data_dir, seed, randomize=r)
            pts.append(point(t, d, part="a", model=loss_model, randomize=r))
    if "b" in parts or "c" in parts:
        for m in models:
            for p in corruptions:
                t, d = configs(m, scale, data_dir, seed, corrupt=p)
                # 1b needs the time to overfit, 1c the test error once fit: stop there.
                t = dataclasses.replace(t, stop_on_overfit=True)
                if scale == "cpu":  # 1c needs the test error only once fit (the last epoch)
                    t = dataclasses.replace(t, test_every=CPU_TEST_EVERY)
                pts.append(point(t, d, part="bc", model=m, corrupt=p))
    return pts


def table1_points(scale, data_dir, models=TABLE1_MODELS, seed=0):
    unknown = [m for m in models if m not in TABLE1_MODELS]
    if unknown:
        raise ValueError(f"--models: Table 1 has no rows for {', '.join(unknown)}; "
                         f"choose from {', '.join(TABLE1_MODELS)}")
    pts = []
    for key in TABLE1:
        model, crop, wd, random_labels = key
        if model not in models:
            continue
        t, d = configs(model, scale, data_dir, seed, augment="crop" if crop else "none",
                       randomize="labels" if random_labels else "none")
        t = dataclasses.replace(t, weight_decay=WEIGHT_DECAY if wd else 0.0)
        if scale == "cpu":
            t = dataclasses.replace(t, stop_on_overfit=True, epochs=CPU_TABLE_EPOCHS.get(family(t.model), 60))
        pts.append(point(t, d, model=model, crop=crop, wd=wd, random_labels=random_labels))
    return pts


def table4_points(scale, data_dir, seed=0):
    """Random labels with a regularizer on; the slower decay the paper needed."""
    pts = []
    for (model, reg) in TABLE4:
        t, d = configs(model, scale, data_dir, seed, randomize="labels",
                       augment={"random_crop": "crop", "augmentation": "crop_flip"}.get(reg, "none"))
        decay = 0.999 if scale == "paper" else 0.999 ** (d.train_size / 50_000)
        t = dataclasses.replace(t, lr_decay=decay,
                                weight_decay=WEIGHT_DECAY if reg == "weight_decay" else 0.0)
        pts.append(point(t, d, model=model, regularizer=reg))
    return pts


def implicit_points(scale, data_dir, seed=0):
    """Figure 2b: small Inception with and without batch norm, no regularizers."""
    pts = []
    for model in ("inception", "inception_nobn"):
        t, d = configs(model, scale, data_dir, seed)
        pts.append(point(t, d, model=model))
    return pts
