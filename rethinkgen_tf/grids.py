"""The paper's experiment suite: which runs each figure and table needs, and the
paper's numbers to compare with.

    grid = figure1_points("cpu", data_dir="...")
    suite.run_grid(grid, "runs/figure1")
    plots.figure1(suite.collect(grid, "runs/figure1"), "runs/figure1")

What each run trains with at each scale (`paper`: full CIFAR-10 and the paper's
schedules; `cpu`: class-balanced subsets sized to finish a figure in about an
hour on a 2-core CPU, with the paper's decay per *step*) is
`rethinkgen_tf.recipes` (`SCALES`, `Scale.configs`); docs/experiments.md has the
table.  Every grid's `scale` is a name in recipes.SCALES or a Scale, e.g. one with
smaller runs for a smoke test (`Scale.capped`, the suites' --train_size, --test_size,
--max_epochs).  This module holds the grids and the paper's numbers.
"""
import functools

from rethinkgen_tf import recipes
from rethinkgen_tf.suite import point

FIG1_MODELS = ("inception", "alexnet", "mlp_1x512", "linear")
FIG1_RANDOMIZATIONS = ("none", "labels", "shuffled_pixels", "random_pixels", "gaussian")
CORRUPTIONS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)

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
# The linear control's rows (no paper numbers): with true and with random labels.
TABLE1_CONTROL = (("linear", False, False, False), ("linear", False, False, True))
TABLE1_MODELS = ("inception", "inception_nobn", "alexnet", "mlp_3x512", "mlp_1x512", "linear")
WEIGHT_DECAY = recipes.WEIGHT_DECAY  # the rows with weight decay: the reproductions' coefficient

# Table 4 (random labels with regularizers, train accuracy %; None: fails to converge).
TABLE4 = {
    ("inception", "weight_decay"): 100.0,
    ("alexnet", "weight_decay"): None,
    ("mlp_3x512", "weight_decay"): 100.0,
    ("mlp_1x512", "weight_decay"): 99.21,
    ("inception", "random_crop"): 99.93,
    ("inception", "augmentation"): 99.28,
}


def configs(model, scale, data_dir, seed=0, **overrides):
    """(TrainConfig, DataConfig) for one CIFAR-10 run at `scale` (recipes.Scale.configs)."""
    return recipes.scale(scale).configs(model, data_dir, seed, **overrides)


def seed_list(seed=0, seeds=1):
    """The seeds of a grid run with `seeds` seeds from `seed` on: seed, seed + 1, ..."""
    if seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {seeds}")
    return range(seed, seed + seeds)


def per_seed(grid):
    """A grid of one seed, grid(scale, data_dir, ..., seed=s) -> the same grid taking
    seed= and seeds=: its points for seed, seed + 1, ..., seed + seeds - 1, one seed after
    the other (each seed its own runs, tagged `seed` by suite.point)."""
    @functools.wraps(grid)
    def each_seed(*args, seed=0, seeds=1, **kw):
        return [p for sd in seed_list(seed, seeds) for p in grid(*args, seed=sd, **kw)]
    return each_seed


@per_seed
def figure1_points(scale, data_dir, models=FIG1_MODELS, loss_model="inception", seed=0,
                   corruptions=CORRUPTIONS, parts="abc"):
    """(a) five randomizations of `loss_model`; (b, c) label corruption sweeps."""
    s = recipes.scale(scale)
    pts = []
    if "a" in parts:
        for r in FIG1_RANDOMIZATIONS:
            t, d = s.configs(loss_model, data_dir, seed, randomize=r,
                             **s.figure1_overrides(loss_model))
            pts.append(point(t, d, part="a", model=loss_model, randomize=r))
    if "b" in parts or "c" in parts:
        for m in models:
            for p in corruptions:
                # 1b needs the time to overfit, 1c the test error once fit: stop there.
                t, d = s.configs(m, data_dir, seed, corrupt=p, test_every=s.figure1_test_every,
                                 **s.figure1_overrides(m))
                pts.append(point(t, d, part="bc", model=m, corrupt=p))
    return pts


@per_seed
def table1_points(scale, data_dir, models=TABLE1_MODELS, seed=0):
    unknown = [m for m in models if m not in TABLE1_MODELS]
    if unknown:
        raise ValueError(f"--models: Table 1 has no rows for {', '.join(unknown)}; "
                         f"choose from {', '.join(TABLE1_MODELS)}")
    s = recipes.scale(scale)
    pts = []
    for key in (*TABLE1, *TABLE1_CONTROL):
        model, crop, wd, random_labels = key
        if model not in models:
            continue
        t, d = s.configs(model, data_dir, seed, augment="crop" if crop else "none",
                         randomize="labels" if random_labels else "none",
                         weight_decay=WEIGHT_DECAY if wd else 0.0, **s.table1_overrides(model))
        pts.append(point(t, d, model=model, crop=crop, wd=wd, random_labels=random_labels))
    return pts


@per_seed
def table4_points(scale, data_dir, seed=0, models=None):
    """Random labels with a regularizer on; the slower decay the paper needed.
    models: only these models' rows (None: all of Table 4)."""
    unknown = sorted(set(models or ()) - {m for m, _ in TABLE4})
    if unknown:
        raise ValueError(f"--models: Table 4 has no rows for {', '.join(unknown)}; choose "
                         f"from {', '.join(dict.fromkeys(m for m, _ in TABLE4))}")
    s = recipes.scale(scale)
    pts = []
    for (model, reg) in TABLE4:
        if models is not None and model not in models:
            continue
        t, d = s.configs(model, data_dir, seed, randomize="labels",
                         augment={"random_crop": "crop", "augmentation": "crop_flip"}.get(reg, "none"),
                         lr_decay=s.per_epoch(recipes.TABLE4_LR_DECAY, model),
                         weight_decay=WEIGHT_DECAY if reg == "weight_decay" else 0.0)
        pts.append(point(t, d, model=model, regularizer=reg))
    return pts


@per_seed
def implicit_points(scale, data_dir, seed=0):
    """Figure 2b: small Inception with and without batch norm, no regularizers."""
    s = recipes.scale(scale)
    pts = []
    for model in ("inception", "inception_nobn"):
        t, d = s.configs(model, data_dir, seed)
        pts.append(point(t, d, model=model))
    return pts


# Names this module had before rethinkgen_tf.recipes held them: read-only views of
# the current recipes.SCALES["cpu"] (replace that Scale to change them).
_MOVED = {
    "CPU_TRAIN_SIZE": lambda: recipes.SCALES["cpu"].train_size,
    "CPU_TEST_SIZE": lambda: recipes.SCALES["cpu"].test_size,
    "CPU_TEST_EVERY": lambda: recipes.SCALES["cpu"].figure1_test_every,
    "CPU_MAX_EPOCHS": lambda: recipes.SCALES["cpu"].max_epochs,
    "CPU_TABLE_EPOCHS": lambda: recipes.SCALES["cpu"].table1_epochs,
    "PAPER_DECAY": lambda: recipes.PAPER_LR_DECAY,
    "BN_FAMILIES": lambda: tuple(f for f, r in recipes.RECIPES.items() if r.batchnorm),
}


def __getattr__(name):
    if name in _MOVED:
        return _MOVED[name]()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
