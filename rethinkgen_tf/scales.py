"""The experiment suite's two scales: `paper` (full CIFAR-10, the paper's schedules)
and `cpu` (subsets sized to finish a figure in about an hour on a 2-core CPU).

    train, data = SCALES["cpu"].configs("inception", data_dir, seed=0, corrupt=0.4)

`Scale.configs` maps a point of a suite's grid to a resolved (TrainConfig,
DataConfig), on top of the families' recipes (`rethinkgen_tf.recipes`).  The
numbers and why: docs/experiments.md#scales.
"""
import dataclasses
import types
from typing import Mapping, Optional

from rethinkgen_tf.data import datasets
from rethinkgen_tf.recipes import FAMILIES, OTHER, OTHER_FAMILY, OTHER_RECIPE, PAPER_LR_DECAY, RECIPES, recipe

DATASET = datasets.BY_NAME["cifar10"]      # the suite's data
CIFAR10_TRAIN_SIZE = DATASET.num_train     # what "per epoch" means at full scale: 50,000


def _per_family(mapping, family):
    return mapping[family] if family in mapping else mapping[OTHER]


@dataclasses.dataclass(frozen=True)
class Scale:
    """How big the suite's runs are: `paper` (full CIFAR-10, the paper's schedules) or
    `cpu` (subsets sized to finish a figure in about an hour on a 2-core CPU).

    Per-family mappings are keyed by models.family, with OTHER for the rest.  On a
    subset of n training examples, what the paper sets per epoch is rescaled by
    n / 50,000 so that it holds per *step*: the learning-rate decay becomes
    decay ** (n / 50,000) per epoch, and the batch norm decay 0.997 ** (50,000 / n)
    per step (its averages span the same fraction of an epoch).  Vary a scale with
    dataclasses.replace; the mappings are read-only.
    """
    name: str
    # Training examples per family (the first n, class-balanced); None: all of them.
    train_size: Optional[Mapping[str, int]] = None
    test_size: Optional[int] = None      # the first n test images; None: all
    # Epochs per family; None: the family's Recipe.epochs.
    max_epochs: Optional[Mapping[str, int]] = None
    # Learning-rate factor per 50,000 examples for every family, rescaled to the
    # subset; None: the family's Recipe.lr_decay per epoch.
    lr_decay: Optional[float] = None
    # Figure 1 b, c: the test set every n epochs and at the last (the test error once
    # fit is what 1c shows; it does not change the trained model nor the run's key).
    figure1_test_every: int = 1
    # Table 1: stop once the training set is fit (the table's train column), at the
    # latest after these epochs per family; None: the full schedule, no stop.
    table1_epochs: Optional[Mapping[str, int]] = None
    # Figure 1: the re-evaluated training accuracy that counts as fit (the end of
    # "time to overfit"), per family; None: 100% for every family.
    figure1_overfit: Optional[Mapping[str, float]] = None

    def __post_init__(self):
        for name in ("train_size", "max_epochs", "table1_epochs", "figure1_overfit"):
            m = getattr(self, name)
            if m is not None:
                if OTHER not in m:
                    raise ValueError(f"Scale.{name} needs an {OTHER!r} entry, got {dict(m)}")
                object.__setattr__(self, name, types.MappingProxyType(dict(m)))
        if self.test_size is not None and self.test_size < 1:
            raise ValueError(f"Scale.test_size must be >= 1, got {self.test_size}")
        if self.figure1_test_every < 1:
            raise ValueError(f"Scale.figure1_test_every must be >= 1, got {self.figure1_test_every}")

    def capped(self, train_size=None, test_size=None, max_epochs=None):
        """This scale with every run's training set of `train_size` examples, its test set
        of the first `test_size` images, and at most `max_epochs` epochs (each None: as
        this scale has it; the suites' --train_size, --test_size, --max_epochs).  They
        change the runs' configs, hence their keys: such runs never mix with others."""
        def cap(mapping):  # per-family epochs (None: the recipes'), at most max_epochs
            if mapping is None:
                mapping = {**{f: r.epochs for f, r in RECIPES.items()}, OTHER: OTHER_RECIPE.epochs}
            return {f: min(e, max_epochs) for f, e in mapping.items()}

        for flag, v in (("train_size", train_size), ("max_epochs", max_epochs)):
            if v is not None and v < 1:
                raise ValueError(f"--{flag} must be >= 1, got {v}")
        changes, what = {}, []
        if train_size is not None:
            changes["train_size"] = {OTHER: train_size}
            what.append(f"train_size={train_size}")
        if test_size is not None:
            changes["test_size"] = test_size
            what.append(f"test_size={test_size}")
        if max_epochs is not None:
            changes["max_epochs"] = cap(self.max_epochs)
            if self.table1_epochs is not None:
                changes["table1_epochs"] = cap(self.table1_epochs)
            what.append(f"max_epochs={max_epochs}")
        if not changes:
            return self
        return dataclasses.replace(self, name="+".join([self.name, *what]), **changes)

    def subset(self, model):
        """Training examples of `model` at this scale (None: the whole training set)."""
        return None if self.train_size is None else _per_family(self.train_size, _family(model))

    def per_epoch(self, decay, model):
        """A factor per epoch at full scale -> per epoch at this scale (the same per step)."""
        n = self.subset(model)
        return decay if n is None else decay ** (n / CIFAR10_TRAIN_SIZE)

    def figure1_overrides(self, model):
        """TrainConfig settings of a Figure 1 run of `model`: stop once the training set
        is fit (the time to overfit is what 1b shows, the test error then what 1c shows;
        after it 1a's loss is flat at about zero)."""
        threshold = 1.0 if self.figure1_overfit is None else \
            _per_family(self.figure1_overfit, _family(model))
        return {"stop_on_overfit": True, "overfit_threshold": threshold}

    def table1_overrides(self, model):
        """TrainConfig settings of a Table 1 run of `model` at this scale."""
        if self.table1_epochs is None:
            return {}
        return {"stop_on_overfit": True,
                "epochs": _per_family(self.table1_epochs, _family(model))}

    def configs(self, model, data_dir, seed=0, **overrides):
        """(TrainConfig, DataConfig) of one CIFAR-10 run of `model` at this scale, resolved.

        model: a models name, or 'inception_nobn' (Inception with batch norm off).
        overrides: TrainConfig or DataConfig fields (by name), set last."""
        from rethinkgen_tf.data import DataConfig
        from rethinkgen_tf.train import TrainConfig
        train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
        data_fields = {f.name for f in dataclasses.fields(DataConfig)}
        unknown = sorted(set(overrides) - train_fields - data_fields)
        if unknown:
            raise ValueError(f"Scale.configs: {', '.join(unknown)} is not a TrainConfig or "
                             "DataConfig field")
        batchnorm = False if model == "inception_nobn" else None
        name = "inception" if model == "inception_nobn" else model
        data = dict(dataset=DATASET.name, data_dir=data_dir, seed=seed, shuffle_seed=seed)
        train = dict(model=name, batchnorm=batchnorm, seed=seed)
        n = self.subset(name)
        if n is not None:
            data.update(train_size=n, balanced=True)
            r = recipe(_family(name))
            if r.batchnorm and batchnorm is not False:
                train["bn_momentum"] = round(r.bn_momentum ** (CIFAR10_TRAIN_SIZE / n), 4)
        if self.test_size is not None:
            data["test_size"] = self.test_size
        if self.max_epochs is not None:
            train["epochs"] = _per_family(self.max_epochs, _family(name))
        if self.lr_decay is not None:
            train["lr_decay"] = self.per_epoch(self.lr_decay, name)
        train.update({k: v for k, v in overrides.items() if k in train_fields})
        data.update({k: v for k, v in overrides.items() if k in data_fields})
        return TrainConfig(**train).resolved(), DataConfig(**data)


def _family(model):
    from rethinkgen_tf import models
    return models.family(model)


PAPER = Scale(
    "paper",
    # MLPs never reach exactly 100% on all 50,000 images, not even with true labels
    # (1 example stays unfit; docs/training.md): "fit" is 99.9% for them (50 unfit).
    # AlexNet too: the paper's own Table 1 has it at 99.82% on random labels.
    figure1_overfit={"mlp": 0.999, "alexnet": 0.999, OTHER: 1.0},
)


# ---- how big the cpu scale's subsets are: a rule, with its inputs
INPUT_DIM = DATASET.crop ** 2 * DATASET.channels  # the models' inputs: CIFAR-10 center-cropped to 28x28x3 = 2,352
MIN_RATIO = 4             # n >= 4 x INPUT_DIM: a linear classifier on the pixels cannot fit
                          # random labels (the linear control: 99% at n = 1,000, 34% at 10,000)
SIZES = (500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000)  # the round sizes considered
RUN_BUDGET_S = 600        # one Figure 1 (b, c) run on the 2-core dev machine, at most
# Per family, from its record (recipes.Family): training images per second on the
# 2-core dev machine, and epochs until the training set is fit at the cpu scale's
# schedule (each epoch also re-evaluates the training set, counted as EVAL_COST of a
# training pass).
THROUGHPUT = {f.name: f.throughput for f in (*FAMILIES, OTHER_FAMILY)}
EPOCHS_TO_FIT = {f.name: f.epochs_to_fit for f in (*FAMILIES, OTHER_FAMILY)}
EVAL_COST = 0.33


def run_seconds(family, n):
    """Estimated seconds of one Figure 1 (b, c) run of `family` on n examples here."""
    epochs = _per_family(EPOCHS_TO_FIT, family)
    return n * epochs * (1 + EVAL_COST) / _per_family(THROUGHPUT, family)


def cpu_train_size(family):
    """The cpu scale's n for a family: the smallest size in SIZES with n >= MIN_RATIO x
    INPUT_DIM (more is the paper scale's job), or, if one run at that n would take
    longer than RUN_BUDGET_S here, the largest size within the budget (below the ratio:
    docs and figures say so).  MLPs and linear: 10,000; AlexNet: 5,000; Inception, WRN:
    1,000."""
    meaningful = next(n for n in SIZES if n >= MIN_RATIO * INPUT_DIM)
    affordable = [n for n in SIZES if run_seconds(family, n) <= RUN_BUDGET_S]
    return min(meaningful, max(affordable, default=SIZES[0]))


CPU = Scale(
    "cpu",
    train_size={f: cpu_train_size(f) for f in THROUGHPUT},
    test_size=2000,
    max_epochs={"mlp": 300, "linear": 300, "alexnet": 300, "inception": 300, "wrn": 300,
                OTHER: 300},
    # the paper's x0.95 per 50,000 examples, for every family (MLPs included)
    lr_decay=PAPER_LR_DECAY,
    # the test set every 10 epochs and at the last (at 1,000 examples it is 2x the training set)
    figure1_test_every=10,
    # 300 epochs for each of 19 runs would take a day on 2 cores; runs with random crops
    # or weight decay may stay just below 100%, hence the cap
    table1_epochs={"mlp": 100, "linear": 100, "alexnet": 60, "inception": 60, "wrn": 60,
                   OTHER: 60},
)
SCALES = {"paper": PAPER, "cpu": CPU}


def scale(name):
    """SCALES[name] (a Scale is returned as it is), or ValueError."""
    if isinstance(name, Scale):
        return name
    if name not in SCALES:
        raise ValueError(f"unknown scale {name!r}; choose {' or '.join(SCALES)}")
    return SCALES[name]
