"""The paper's experiment suite: which runs each figure and table needs, and the
paper's numbers to compare with.

    grid = figure1_points("cpu", data_dir="...")
    suite.run_grid(grid, "runs/figure1")
    plots.figure1(suite.collect(grid, "runs/figure1"), "runs/figure1")

What each run trains with at each scale (`paper`: full CIFAR-10 and the paper's
schedules; `cpu`: class-balanced subsets sized to finish a figure in about an
hour on a 2-core CPU, with the paper's decay per *step*) is
`rethinkgen_tf.scales` (`SCALES`, `Scale.configs`); docs/experiments.md has the
table.  Every grid's `scale` is a name in scales.SCALES or a Scale, e.g. one with
smaller runs for a smoke test (`Scale.capped`, the suites' --train_size, --test_size,
--max_epochs).  This module holds the grids and the paper's numbers.
"""
import dataclasses
import functools
import math

from rethinkgen_tf import recipes, scales, user_model
from rethinkgen_tf.ops import randomizations
from rethinkgen_tf.suite import point

FIG1_MODELS = ("inception", "alexnet", "mlp_1x512", "linear")
FIG1_RANDOMIZATIONS = randomizations.NAMES  # 1a: every randomization, in the records' order
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
    """(TrainConfig, DataConfig) for one CIFAR-10 run at `scale` (scales.Scale.configs)."""
    return scales.scale(scale).configs(model, data_dir, seed, **overrides)


# ---- your model, your data: models given by reference (module:function) and datasets
# other than CIFAR-10 (class folders, a .npz) in every grid
DATASETS = ("cifar10", "folder", "numpy")
# Table 1's rows of a model given by reference: (random crop, weight decay, random labels)
USER_ROWS = ((True, True, False), (True, False, False), (False, True, False),
             (False, False, False), (False, False, True))


def cpu_train_size(family, input_dim):
    """scales.cpu_train_size's rule for data of `input_dim` values per image: the smallest
    round size with n >= scales.MIN_RATIO x input_dim, or the largest within the run budget
    if smaller."""
    meaningful = next((n for n in scales.SIZES if n >= scales.MIN_RATIO * input_dim),
                      scales.SIZES[-1])
    affordable = [n for n in scales.SIZES if scales.run_seconds(family, n) <= scales.RUN_BUDGET_S]
    return min(meaningful, max(affordable, default=scales.SIZES[0]))


@dataclasses.dataclass(frozen=True)
class Source:
    """The data of a grid's runs: CIFAR-10 (as the paper), or your own (dataset 'folder' or
    'numpy' under data_dir) with its shape and split sizes."""
    dataset: str = "cifar10"
    data_dir: object = None
    recipe: object = None           # the recipe of the models given by reference
    input_dim: object = None        # values per image of your data (None: CIFAR-10)
    counts: tuple = (None, None)    # (training, test) examples of your data
    # dataset numpy from Python (rethinkgen_tf.api): (x_train, y_train, x_test, y_test)
    arrays: object = dataclasses.field(default=None, compare=False, repr=False)

    def scale(self, scale):
        """`scale` for this data: as it is for CIFAR-10; for your data the cpu scale's sizes
        follow its rule on the data's own input dimension (each at most the data's split)."""
        s = scales.scale(scale)
        if self.dataset == "cifar10":
            return s
        n_train, n_test = self.counts
        sizes = s.train_size
        if sizes is not None and set(sizes) != {recipes.OTHER}:  # the scale's own, not --train_size
            sizes = {f: min(cpu_train_size(f, self.input_dim), n_train) for f in sizes}
        test = None if s.test_size is None else min(s.test_size, n_test)
        return dataclasses.replace(s, train_size=sizes, test_size=test)

    def configs(self, s, model, data_dir, seed, **overrides):
        """s.configs(...) (a resolved TrainConfig, DataConfig) for this data, a model given
        by reference with the recipe and its architecture (user_model.identified)."""
        extra = {}
        if self.dataset != "cifar10":  # the images at their own size
            extra.update(dataset=self.dataset, crop=None)
        if user_model.is_reference(model) and self.recipe is not None:
            extra["recipe"] = self.recipe
        t, d = s.configs(model, data_dir, seed, **extra, **overrides)
        n_train, n_test = self.counts
        if n_train is not None and d.train_size == n_train:  # all of it, in index order
            d = dataclasses.replace(d, train_size=None, balanced=False)
        if n_test is not None and d.test_size == n_test:
            d = dataclasses.replace(d, test_size=None)
        return user_model.identified(t, d, self.arrays), d


def source(dataset="cifar10", data_dir=None, recipe=None, arrays=None):
    """The Source of a grid's runs; your data (folder, numpy) is looked at once: its image
    shape and split sizes (user_model.data_shape)."""
    if dataset not in DATASETS:
        raise ValueError(f"--dataset={dataset}: choose one of {', '.join(DATASETS)}")
    if dataset == "cifar10":
        return Source(dataset, data_dir, recipe)
    from rethinkgen_tf.data import DataConfig
    shape, _, n_train, n_test = user_model.data_shape(
        DataConfig(dataset=dataset, data_dir=data_dir, crop=None), arrays)
    return Source(dataset, data_dir, recipe, math.prod(shape), (n_train, n_test), arrays)


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
                   corruptions=CORRUPTIONS, parts="abc", dataset="cifar10", recipe=None):
    """(a) five randomizations of `loss_model`; (b, c) label corruption sweeps.
    Models are names or references module:function (with `recipe`); dataset: cifar10,
    folder or numpy (under data_dir)."""
    src = source(dataset, data_dir, recipe)
    s = src.scale(scale)
    pts = []
    if "a" in parts:
        for r in FIG1_RANDOMIZATIONS:
            t, d = src.configs(s, loss_model, data_dir, seed, randomize=r,
                               **s.figure1_overrides(loss_model))
            pts.append(point(t, d, part="a", model=loss_model, randomize=r))
    if "b" in parts or "c" in parts:
        for m in models:
            for p in corruptions:
                # 1b needs the time to overfit, 1c the test error once fit: stop there.
                t, d = src.configs(s, m, data_dir, seed, corrupt=p,
                                   test_every=s.figure1_test_every, **s.figure1_overrides(m))
                pts.append(point(t, d, part="bc", model=m, corrupt=p))
    return pts


@per_seed
def table1_points(scale, data_dir, models=TABLE1_MODELS, seed=0, dataset="cifar10",
                  recipe=None):
    """Table 1's rows of `models`; a model given by reference (module:function, with
    `recipe`) gets USER_ROWS.  On data other than CIFAR-10 (dataset folder or numpy) the
    images keep their size: no random-crop rows."""
    unknown = [m for m in models if m not in TABLE1_MODELS and not user_model.is_reference(m)]
    if unknown:
        raise ValueError(f"--models: Table 1 has no rows for {', '.join(unknown)}; "
                         f"choose from {', '.join(TABLE1_MODELS)}, or your own model as "
                         "module:function")
    src = source(dataset, data_dir, recipe)
    s = src.scale(scale)
    pts = []
    mine = [(m, *row) for m in dict.fromkeys(models) if user_model.is_reference(m)
            for row in USER_ROWS]
    for key in (*TABLE1, *TABLE1_CONTROL, *mine):
        model, crop, wd, random_labels = key
        if model not in models or (crop and dataset != "cifar10"):
            continue
        t, d = src.configs(s, model, data_dir, seed, augment="crop" if crop else "none",
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
    s = scales.scale(scale)
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
def implicit_points(scale, data_dir, seed=0, models=("inception",), dataset="cifar10",
                    recipe=None):
    """Figure 2b: small Inception with and without batch norm, no regularizers; a model
    given by reference (module:function, its builder taking batchnorm) likewise."""
    bad = [m for m in models if m != "inception" and not user_model.is_reference(m)]
    if bad:
        raise ValueError(f"--models: Figure 2b compares inception, or your own model as "
                         f"module:function, with and without batch norm; not {', '.join(bad)}")
    src = source(dataset, data_dir, recipe)
    s = src.scale(scale)
    pts = []
    for m in dict.fromkeys(models):
        if m == "inception":
            for model in ("inception", "inception_nobn"):
                t, d = src.configs(s, model, data_dir, seed)
                pts.append(point(t, d, model=model))
            continue
        for bn in (True, False):
            t, d = src.configs(s, m, data_dir, seed, batchnorm=bn)
            pts.append(point(t, d, model=m if bn else f"{m} (no batch norm)"))
    return pts


# Names this module had before rethinkgen_tf.recipes and .scales held them: read-only views of
# the current scales.SCALES["cpu"] (replace that Scale to change them).
_MOVED = {
    "CPU_TRAIN_SIZE": lambda: scales.SCALES["cpu"].train_size,
    "CPU_TEST_SIZE": lambda: scales.SCALES["cpu"].test_size,
    "CPU_TEST_EVERY": lambda: scales.SCALES["cpu"].figure1_test_every,
    "CPU_MAX_EPOCHS": lambda: scales.SCALES["cpu"].max_epochs,
    "CPU_TABLE_EPOCHS": lambda: scales.SCALES["cpu"].table1_epochs,
    "PAPER_DECAY": lambda: recipes.PAPER_LR_DECAY,
    "BN_FAMILIES": lambda: tuple(f for f, r in recipes.RECIPES.items() if r.batchnorm),
}


def __getattr__(name):
    if name in _MOVED:
        return _MOVED[name]()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
