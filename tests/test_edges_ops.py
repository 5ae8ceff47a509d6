"""Issue 22, performance of the op: label permutation v2 (a keyed Feistel
bijection, no sort) and the AVX-512 path of the CPU kernels.

The permutation is the same in every implementation (compiled op, pure-TF
fallback, pybind11 module at any thread count, NumPy reference; the CUDA
kernel through tests/gpu), is a permutation, is statistically uniform-ish,
and is versioned: a run made with the old permutation is never resumed
with this one."""
import dataclasses
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf
from scipy import stats

from rethinkgen_tf import ops
from rethinkgen_tf.ops import _tf_impl
from rethinkgen_tf.ops import reference as ref

native_numpy = pytest.importorskip("rethinkgen_tf.ops.native_numpy")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

# Around the Fisher-Yates / Feistel switch, at powers of two (no cycle-walking)
# and just above them (the longest walks), and an odd size.
FEISTEL_SIZES = [4096, 4097, 8192, 8193, 70_001]


def _perm_of(m, seed, fn):
    """The permutation itself: labels = positions, p = 1, indices in order."""
    return np.asarray(fn(np.arange(m, dtype=np.int64), np.arange(m, dtype=np.int64), 1.0, m,
                         seed, "permute"))


def test_permute_v2_known_answers():
    """The spec, pinned: m <= 4096 keeps Fisher-Yates (purpose LPRM, index 0);
    above, the Feistel bijection with cycle-walking (docs/randomization.md)."""
    assert ref.FEISTEL_MIN_ITEMS == 4096
    np.testing.assert_array_equal(ref.label_permutation(4096, 3),
                                  ref.fisher_yates(4096, 3, ref.PURPOSE["label_permute"], 0))
    p = ref.label_permutation(1_281_167, 3)
    assert p[:5].tolist() == [839350, 22727, 920013, 795134, 962334]
    assert ref.label_permutation(4097, 3)[:3].tolist() == [2828, 3749, 197]
    # not the old permutation (Fisher-Yates at every size)
    assert not np.array_equal(ref.label_permutation(4097, 3),
                              ref.fisher_yates(4097, 3, ref.PURPOSE["label_permute"], 0))


@pytest.mark.parametrize("m", FEISTEL_SIZES)
def test_permute_v2_is_a_permutation_and_walks_stay_bounded(m):
    perm = ref.feistel_permutation(m, 11)
    np.testing.assert_array_equal(np.sort(perm), np.arange(m))
    if m > ref.FEISTEL_MIN_ITEMS:
        np.testing.assert_array_equal(ref.label_permutation(m, 11), perm)
    # Cycle-walking: all walks together take at most 2^b encryptions.
    fkey = ref.feistel_key(11, m)
    b = fkey[2] + fkey[3]
    assert 2 ** (b - 1) < m <= 2 ** b
    x, steps = ref.feistel_encrypt(fkey, np.arange(m, dtype=np.uint32)), m
    while (x >= m).any():
        steps += int((x >= m).sum())
        x = np.where(x >= m, ref.feistel_encrypt(fkey, x), x)
    assert steps <= 2 ** b
    np.testing.assert_array_equal(x, perm)


@pytest.mark.parametrize("m", FEISTEL_SIZES)
def test_permute_v2_same_in_every_implementation(m):
    """Compiled op, pybind11 module at 1, 2 and 3 threads, pure-TF fallback
    and reference; unsorted indices with duplicates (stable tie order), p < 1
    and p = 1, int32 and int64, and a 2-D label column."""
    rng = np.random.default_rng(m)
    for p, dtype in ((1.0, np.int64), (0.9, np.int32)):
        n = int(m / p) + 3
        labels = rng.integers(0, 1000, n).astype(dtype)
        indices = rng.integers(0, n // 2, n).astype(np.int64) + 2**33
        want = ref.corrupt_labels(labels, indices, p, 1000, -5, "permute")
        assert not np.array_equal(want, labels)
        np.testing.assert_array_equal(np.bincount(want), np.bincount(labels))
        np.testing.assert_array_equal(ops.corrupt_labels(labels, indices, p, 1000, -5, "permute"),
                                      want)
        for threads in (1, 2, 3):
            np.testing.assert_array_equal(
                native_numpy.corrupt_labels(labels, indices, p, 1000, -5, "permute",
                                            threads=threads), want)
        fb = _tf_impl.corrupt_labels(tf.constant(labels), tf.constant(indices),
                                     tf.constant(p, tf.float64), tf.constant(1000, tf.int64),
                                     tf.constant(-5, tf.int64), "permute").numpy()
        np.testing.assert_array_equal(fb, want)
        if n % 2 == 0:  # the same column as a [2, n/2] tensor
            got = ops.corrupt_labels(labels.reshape(2, -1), indices.reshape(2, -1), p, 1000, -5,
                                     "permute")
            np.testing.assert_array_equal(np.reshape(got, -1), want)


def test_permute_v2_fallback_in_a_graph():
    """The fallback's cycle-walk is a tf.while_loop with a data-dependent
    count: it traces once and runs for any m."""
    fn = tf.function(lambda m: _tf_impl.label_permutation(m, tf.constant(9, tf.int64)))
    for m in (3, 4097, 9000):
        np.testing.assert_array_equal(fn(tf.constant(m, tf.int64)), ref.label_permutation(m, 9))


def test_permute_v2_positions_uniform():
    """Chi-square, over 1,200 seeds, of where items 0, 1, m/2 and m-1 land
    (16 bins each) and of the pair (position of 0, position of 1) (8 x 8
    bins), at m = 4097 (the shortest Feistel halves: 6 and 7 bits); and the
    rank correlation of the permutations of neighbouring seeds."""
    m, seeds, bins = 4097, 1200, 16
    items = [0, 1, m // 2, m - 1]
    where = np.zeros((len(items), bins))
    pairs = np.zeros((8, 8))
    corr = []
    prev = None
    for s in range(seeds):
        perm = np.argsort(_perm_of(m, s, native_numpy.corrupt_labels))  # item -> position
        for a, i in enumerate(items):
            where[a, perm[i] * bins // m] += 1
        pairs[perm[0] * 8 // m, perm[1] * 8 // m] += 1
        if prev is not None:
            corr.append(stats.spearmanr(prev, perm).statistic)
        prev = perm
    for row in where:
        assert stats.chisquare(row).pvalue > 1e-3, row
    assert stats.chisquare(pairs.reshape(-1)).pvalue > 1e-3
    # independent permutations: correlation ~ N(0, 1/m)
    assert abs(np.mean(corr)) * np.sqrt(m * len(corr)) < 4
    assert np.max(np.abs(corr)) * np.sqrt(m) < 5


def test_permute_v2_small_m_uniform_over_all_orders():
    """m <= 4096 is Fisher-Yates: all 5! = 120 orders of 5 items, equally often."""
    counts = {}
    for s in range(3000):
        key = tuple(_perm_of(5, s, native_numpy.corrupt_labels))
        counts[key] = counts.get(key, 0) + 1
    assert len(counts) == 120
    assert stats.chisquare(list(counts.values())).pvalue > 1e-3


def test_permute_version_is_part_of_the_run():
    """A run directory made with the old permutation (its config.json has no
    permute_version) is a different run: not resumed, not reused; uniform-mode
    runs are unaffected."""
    from rethinkgen_tf import suite, train
    from rethinkgen_tf.data import DataConfig
    permute = DataConfig(corrupt=0.5, label_mode="permute")
    uniform = DataConfig(corrupt=0.5)
    assert permute.permute_version == 2 and uniform.permute_version is None
    assert dataclasses.replace(permute, label_mode="uniform").permute_version is None
    with pytest.raises(TypeError):
        DataConfig(label_mode="permute", permute_version=1)  # derived, never set

    def config(data):
        return {"train": {"model": "mlp_1x512"}, "data": dataclasses.asdict(data)}
    old_permute = config(permute)
    del old_permute["data"]["permute_version"]
    assert train._changes(old_permute, config(permute)) == ["permute_version None -> 2"]
    old_uniform = config(uniform)
    del old_uniform["data"]["permute_version"]
    assert not train._differs(old_uniform, config(uniform))
    # The suites' run key: the version enters it (a new directory), uniform keys do not change.
    tc = train.TrainConfig(model="mlp_1x512")
    assert suite.config_key(suite.point(tc, permute)) != \
        suite.config_key(suite.point(tc, _without_version(permute)))
    assert "permute_version" not in suite._non_default(uniform)


def _without_version(data):
    """The config as an older version recorded it (no permute_version)."""
    c = dataclasses.replace(data)
    object.__setattr__(c, "permute_version", None)
    return c


def _run(code, **env):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO,
                          env=dict(os.environ, **env), capture_output=True, text=True,
                          timeout=600)


def _cpu_has_avx512():
    try:
        with open("/proc/cpuinfo") as f:
            flags = set(f.read().split())
    except OSError:
        return False
    return {"avx2", "avx512f", "avx512bw", "avx512dq", "avx512vl"} <= flags


@pytest.mark.skipif(not _cpu_has_avx512(), reason="no AVX-512 CPU")
def test_avx512_path_runs_and_is_bit_exact():
    """On an AVX-512 CPU the default path is avx512 (both libraries), and its
    Gaussian images (every vector tail) and Feistel lanes equal the reference
    bit for bit, as does RETHINKGEN_CPU_PATH=avx2 there."""
    code = """
        import numpy as np, ml_dtypes
        from rethinkgen_tf import ops
        from rethinkgen_tf.ops import native_numpy as nn, reference as ref
        assert nn.cpu_path() == ops.cpu_path(), (nn.cpu_path(), ops.cpu_path())
        idx = np.array([5, 2**35 + 3, 0])
        for shape in [(1, 1, 1), (1, 15, 1), (1, 17, 1), (1, 63, 1), (1, 65, 1), (3, 683, 1),
                      (1, 1025, 2), (2049, 1, 1), (1, 1367, 3), (28, 28, 3)]:
            mean, std = np.linspace(-2, 2, shape[-1]), np.linspace(0.25, 3, shape[-1])
            for dt in (np.float32, np.float16, ml_dtypes.bfloat16):
                want = ref.gaussian_images(idx, -4, shape, mean, std, dt).view(np.uint8)
                assert (nn.gaussian_images(idx, -4, shape, mean, std, dt).view(np.uint8) == want).all()
                assert (ops.gaussian_images(idx, -4, shape, mean, std, dt).numpy().view(np.uint8)
                        == want).all(), shape
        for m in (4097, 8193, 100003):
            lab = np.arange(m)
            want = ref.corrupt_labels(lab, lab, 1.0, m, 2, "permute")
            assert (nn.corrupt_labels(lab, lab, 1.0, m, 2, "permute") == want).all()
            assert (ops.corrupt_labels(lab, lab, 1.0, m, 2, "permute").numpy() == want).all()
        print(nn.cpu_path())
    """
    for path in ("auto", "avx2"):
        r = _run(code, RETHINKGEN_CPU_PATH=path)
        assert r.returncode == 0, r.stderr[-3000:]
        assert r.stdout.split()[-1] == ("avx512" if path == "auto" else "avx2")
