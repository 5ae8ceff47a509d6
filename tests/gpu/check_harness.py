"""Checks the harness module (cuda or cpu backend) against the NumPy reference.

    python tests/gpu/check_harness.py --module-dir DIR            # correctness
    python tests/gpu/check_harness.py --module-dir DIR --sanitize # one small pass of each kernel
    python tests/gpu/check_harness.py --module-dir DIR --bench    # throughput vs torch (cuda only)

Exit status 0 iff every check passed.  Imports NumPy and, for --bench,
PyTorch; never TensorFlow (rethinkgen_tf/ops/reference.py is loaded by file path).
"""
import argparse
import importlib.util
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def load_reference():
    spec = importlib.util.spec_from_file_location(
        "rethinkgen_reference", os.path.join(ROOT, "rethinkgen_tf", "ops", "reference.py"))
    ref = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ref)
    return ref


def load_harness(module_dir):
    sys.path.insert(0, module_dir)
    import rg_harness  # noqa: E402
    return rg_harness


SEEDS = [0, 1234567, -987654321012, 2**63 - 1]

FAILURES = []


def check(ok, what):
    status = "ok  " if ok else "FAIL"
    print(f"  [{status}] {what}", flush=True)
    if not ok:
        FAILURES.append(what)


def bf16_bits(x):
    """Round-to-nearest-even float32 -> bfloat16 bit patterns (finite x)."""
    u = np.asarray(x, np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def ulp_diff_f32(a, b):
    ia = a.view(np.int32).astype(np.int64)
    ib = b.view(np.int32).astype(np.int64)
    ia = np.where(ia < 0, -(ia & 0x7FFFFFFF), ia)
    ib = np.where(ib < 0, -(ib & 0x7FFFFFFF), ib)
    return int(np.max(np.abs(ia - ib))) if a.size else 0


def ulp_diff_u16(a, b):
    # half / bfloat16 bit patterns, sign-magnitude -> ordered ints
    ia = a.astype(np.int64)
    ib = b.astype(np.int64)
    ia = np.where(ia & 0x8000, -(ia & 0x7FFF), ia)
    ib = np.where(ib & 0x8000, -(ib & 0x7FFF), ib)
    return int(np.max(np.abs(ia - ib))) if a.size else 0


# --------------------------------------------------------------------------
def check_permutations(h, ref, quick):
    print("Fisher-Yates permutations (parallel walk) vs reference.fisher_yates")
    ns = [1, 2, 3, 4, 5, 17, 784, 1024, 3071, 3072, 3073, 5000]
    if not quick:
        ns += [89401]
    for n in ns:
        for seed in SEEDS[:2] if n > 5000 else SEEDS:
            idx = np.array([0, 1, 7, 2**40 + 3], np.int64)
            if n > 5000:
                idx = idx[:2]
            got = h.permutations(idx, n, seed, ref.PURPOSE["pixels_per_example"])
            want = np.stack([ref.fisher_yates(n, seed, ref.PURPOSE["pixels_per_example"],
                                              int(i)) for i in idx])
            check(np.array_equal(got.astype(np.int64), want),
                  f"n={n} seed={seed} indices={idx.tolist()}")


def check_labels(h, ref, quick):
    print("corrupt_labels vs reference (bit for bit)")
    rng = np.random.default_rng(0)
    for n in [1, 2, 7, 1000, 50000]:
        for ltype in (np.int32, np.int64):
            for itype in (np.int32, np.int64):
                for k in (1, 10, 1000):
                    for p in (0.0, 0.3, 1.0):
                        for mode in ("uniform", "permute"):
                            if quick and n == 50000 and (k != 10 or ltype != np.int32):
                                continue
                            labels = rng.integers(0, k, n).astype(ltype)
                            # unsorted, with duplicates (stable tie order matters)
                            indices = rng.integers(0, max(2, n // 2), n).astype(itype)
                            seed = int(rng.choice(SEEDS))
                            got = h.corrupt_labels(labels, indices, p, k, seed, mode)
                            want = ref.corrupt_labels(labels, indices, p, k, seed, mode)
                            if not (np.array_equal(got, want) and got.dtype == want.dtype):
                                check(False, f"n={n} {ltype.__name__}/{itype.__name__} "
                                             f"K={k} p={p} {mode} seed={seed}")
                                return
    check(True, "all label configurations (n up to 50000, int32/int64, K, p, modes)")
    # Mode "permute" v2 around the Fisher-Yates / Feistel switch (m = 4096 | 4097),
    # at a power of two (no cycle-walking) and just above one (the longest walks).
    for m in (4096, 4097, 8192, 8193, 1_281_167 if not quick else 70_001):
        labels = rng.integers(0, 1000, m).astype(np.int32)
        indices = np.arange(m, dtype=np.int64)
        got = h.corrupt_labels(labels, indices, 1.0, 1000, 5, "permute")
        want = ref.corrupt_labels(labels, indices, 1.0, 1000, 5, "permute")
        check(np.array_equal(got, want), f"permute v2 (Feistel for m > 4096), m = {m}")
    labels = np.array([0, 5, 2**32 - 1], np.int64)
    indices = np.array([3, 1, 2**62], np.int64)
    got = h.corrupt_labels(labels, indices, 0.5, 2**32, 99, "uniform")
    want = ref.corrupt_labels(labels, indices, 0.5, 2**32, 99, "uniform")
    check(np.array_equal(got, want), "K = 2^32, huge indices")
    for bad, what in [((np.array([0, 3], np.int32), np.array([0, 1], np.int64)), "label >= K"),
                      ((np.array([0, -1], np.int32), np.array([0, 1], np.int64)), "label < 0"),
                      ((np.array([0, 1], np.int32), np.array([0, -5], np.int64)), "index < 0")]:
        try:
            h.corrupt_labels(bad[0], bad[1], 0.5, 3, 1, "uniform")
            check(False, f"rejects {what}")
        except ValueError:
            check(True, f"rejects {what}")


PIXEL_SHAPES = [
    ((5,), (28, 28, 1)),        # MNIST
    ((4,), (32, 32, 3)),        # CIFAR
    ((2, 3), (7, 5, 3)),        # odd, 2-D batch
    ((3,), (1, 1, 1)),
    ((2,), (40, 77, 2)),        # P = 3080: just above the shared-memory path
    ((2,), (299, 299, 3)),      # ImageNet-sized: global-memory path
]


def check_pixels(h, ref, quick):
    print("permute_pixels vs reference (bit for bit)")
    rng = np.random.default_rng(1)
    dtypes = [np.uint8, np.float16, np.float32, np.float64, "bfloat16"]
    for batch, (H, W, C) in PIXEL_SHAPES:
        for mode in ("per_example", "shared"):
            for unit in ("position", "value"):
                if quick and H == 299 and unit == "value":
                    continue
                for dt in dtypes:
                    if H == 299 and dt not in (np.uint8,):
                        continue
                    shape = batch + (H, W, C)
                    if dt == "bfloat16":
                        images = rng.integers(0, 2**16, shape).astype(np.uint16)
                    elif dt == np.uint8:
                        images = rng.integers(0, 256, shape).astype(np.uint8)
                    else:
                        images = rng.standard_normal(shape).astype(dt)
                    indices = rng.integers(0, 10**6, batch).astype(
                        np.int32 if H % 2 else np.int64)
                    seed = int(rng.choice(SEEDS))
                    P, CC = (H * W * C, 1) if unit == "value" else (H * W, C)
                    got = h.permute_pixels(images, indices.reshape(-1), seed,
                                           mode == "per_example", P, CC)
                    want = ref.permute_pixels(images, indices, seed, mode, unit)
                    ok = np.array_equal(got.view(np.uint8), want.view(np.uint8))
                    check(ok, f"{batch + (H, W, C)} {np.dtype(dt) if dt != 'bfloat16' else dt} "
                              f"{mode} {unit}")
    try:
        h.permute_pixels(np.zeros((2, 4, 1), np.uint8), np.array([1, -1], np.int64), 0,
                         True, 4, 1)
        check(False, "rejects index < 0")
    except ValueError:
        check(True, "rejects index < 0")


GAUSS_SHAPES = [(28, 28, 1), (32, 32, 3), (5, 7, 3), (1, 1, 1), (3, 3, 2), (2, 3, 5),
                (299, 299, 3)]

TOLERANCE_ULP = 1  # documented tolerance; expected 0 (see randomize_gpu.cuh)


def check_gaussian(h, ref, quick):
    print(f"gaussian_images vs reference (tolerance {TOLERANCE_ULP} ulp, expected exact)")
    rng = np.random.default_rng(2)
    worst = {0: 0, 1: 0, 2: 0}
    for shape in GAUSS_SHAPES:
        C = shape[-1]
        N = int(np.prod(shape))
        batch = 2 if N > 10000 else 5
        indices = rng.integers(0, 2**40, batch).astype(np.int64)
        if N % 2:
            indices = indices.astype(np.int32) % (2**31 - 1)
        mean = rng.standard_normal(C).astype(np.float32)
        std = np.abs(rng.standard_normal(C)).astype(np.float32)
        std[0] = 0.0 if C > 1 else std[0]
        seed = int(rng.choice(SEEDS))
        want = ref.gaussian_images(indices, seed, shape, mean, std, np.float32)
        want = want.reshape(batch, N)
        got = h.gaussian_images(indices, seed, N, mean, std, 0)
        d = ulp_diff_f32(got, want)
        worst[0] = max(worst[0], d)
        check(d <= TOLERANCE_ULP, f"{shape} float32 max ulp diff {d}")
        got16 = h.gaussian_images(indices, seed, N, mean, std, 1)
        d = ulp_diff_u16(got16, want.astype(np.float16).view(np.uint16))
        worst[1] = max(worst[1], d)
        check(d <= TOLERANCE_ULP, f"{shape} float16 max ulp diff {d}")
        gotbf = h.gaussian_images(indices, seed, N, mean, std, 2)
        d = ulp_diff_u16(gotbf, bf16_bits(want))
        worst[2] = max(worst[2], d)
        check(d <= TOLERANCE_ULP, f"{shape} bfloat16 max ulp diff {d}")
    print(f"  worst ulp differences: float32 {worst[0]}, float16 {worst[1]}, "
          f"bfloat16 {worst[2]}")
    try:
        h.gaussian_images(np.array([-1], np.int64), 0, 4, np.zeros(1, np.float32),
                          np.ones(1, np.float32), 0)
        check(False, "rejects index < 0")
    except ValueError:
        check(True, "rejects index < 0")


def sanitize_pass(h):
    """One small pass over every kernel (for compute-sanitizer)."""
    print("one pass of each kernel (for compute-sanitizer)")
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 10, 1000).astype(np.int32)
    idx = rng.integers(0, 500, 1000).astype(np.int64)
    for mode in ("uniform", "permute"):
        h.corrupt_labels(labels, idx, 0.5, 10, 7, mode)
    for shape in [(3, 28, 28, 3), (2, 61, 61, 3)]:  # shared-memory and global paths
        img = rng.integers(0, 256, shape).astype(np.uint8)
        P = shape[1] * shape[2]
        for per_example in (True, False):
            h.permute_pixels(img, np.arange(shape[0], dtype=np.int64), 5, per_example, P, 3)
    h.permutations(np.arange(2, dtype=np.int64), 5000, 1, 0x50495845)
    for dt in (0, 1, 2):
        h.gaussian_images(np.arange(3, dtype=np.int64), 1, 7 * 5 * 3,
                          np.zeros(3, np.float32), np.ones(3, np.float32), dt)
        h.gaussian_images(np.arange(3, dtype=np.int64), 1, 28 * 28 * 3,
                          np.zeros(3, np.float32), np.ones(3, np.float32), dt)
    try:
        h.corrupt_labels(np.array([0, 11], np.int32), np.array([0, 1], np.int64), 0.5, 10, 1,
                         "uniform")
    except ValueError:
        pass
    h.synchronize()
    check(True, "kernels ran")


# --------------------------------------------------------------------------
def bench(h):
    import torch
    assert torch.cuda.is_available(), "--bench needs a CUDA device"
    dev = torch.device("cuda")
    print(f"Throughput on {torch.cuda.get_device_name(0)} "
          f"(harness: {h.device_name()}), medians of timed repetitions")

    def timeit(fn, reps=10, warmup=2):
        for _ in range(warmup):
            fn()
        torch.cuda.synchronize()
        times = []
        for _ in range(reps):
            a = torch.cuda.Event(enable_timing=True)
            b = torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            b.synchronize()
            times.append(a.elapsed_time(b))
        return float(np.median(times))  # ms

    rows = []
    results = {}

    def row(name, ms, nbytes, note=""):
        gbs = nbytes / ms / 1e6
        rows.append((name, ms, gbs, note))
        print(f"  {name:58s} {ms:9.3f} ms {gbs:9.1f} GB/s {note}", flush=True)
        return ms

    # Ceiling: device memory fill bandwidth.
    buf = torch.empty(2 << 30, dtype=torch.uint8, device=dev)
    fill_ms = timeit(lambda: buf.fill_(7))
    fill_gbs = buf.numel() / fill_ms / 1e6
    row("memory fill (torch.fill_, 2 GiB) = ceiling", fill_ms, buf.numel())
    buf = None  # free the device memory
    results["fill_gbs"] = fill_gbs

    h.set_validate(False)
    # Gaussian images.
    for batch, shape in [(50000, (28, 28, 3)), (256, (299, 299, 3))]:
        N = int(np.prod(shape))
        out = torch.empty((batch, N), dtype=torch.float32, device=dev)
        idx = torch.arange(batch, dtype=torch.int64, device=dev)
        mean = np.array([0.5, 0.4, 0.3], np.float32)
        std = np.array([0.2, 0.25, 0.3], np.float32)
        name = f"{batch}x{'x'.join(map(str, shape))} float32"
        t_torch = row(f"gaussian  torch.normal_      {name}", timeit(lambda: out.normal_()),
                      out.numel() * 4)
        t_ours = row(f"gaussian  rethinkgen          {name}",
                     timeit(lambda: h.dev_gaussian_images(idx.data_ptr(), 8, batch, N, mean,
                                                          std, 3, 0, out.data_ptr())),
                     out.numel() * 4)
        h.set_validate(True)
        row(f"gaussian  rethinkgen+validate {name}",
            timeit(lambda: h.dev_gaussian_images(idx.data_ptr(), 8, batch, N, mean, std, 3,
                                                 0, out.data_ptr())), out.numel() * 4)
        h.set_validate(False)
        results[f"gauss {name}"] = t_torch / t_ours
        out = None

    # Per-example random pixels.
    for batch, P in [(50000, 784), (256, 89401)]:
        x = torch.randint(0, 256, (batch, P, 3), dtype=torch.uint8, device=dev)
        out = torch.empty_like(x)
        idx = torch.arange(batch, dtype=torch.int64, device=dev)

        def baseline():
            keys = torch.rand(batch, P, device=dev)
            perm = torch.argsort(keys, dim=1)
            return torch.gather(x, 1, perm.unsqueeze(-1).expand(-1, -1, 3))

        name = f"{batch}x{P}x3 uint8"
        t_base = row(f"pixels    rand+argsort+gather {name}", timeit(baseline), 2 * x.numel())
        t_ours = row(f"pixels    rethinkgen          {name}",
                     timeit(lambda: h.dev_permute_pixels(x.data_ptr(), 1, idx.data_ptr(), 8,
                                                         batch, P, 3, 11, True,
                                                         out.data_ptr())), 2 * x.numel())
        results[f"pixels {name}"] = t_base / t_ours
        x = out = None

    # Label corruption (uniform): 64M int32 labels, int64 indices.
    n = 64 << 20
    labels = torch.randint(0, 10, (n,), dtype=torch.int32, device=dev)
    idx = torch.arange(n, dtype=torch.int64, device=dev)
    out = torch.empty_like(labels)
    nbytes = n * (4 + 8 + 4)
    t = row("labels    rethinkgen uniform 64M int32/int64",
            timeit(lambda: h.dev_corrupt_labels(labels.data_ptr(), 4, idx.data_ptr(), 8, n,
                                                0.5, 10, 5, False, out.data_ptr())), nbytes)
    results["labels_bw_fraction"] = (nbytes / t / 1e6) / fill_gbs
    t = row("labels    torch copy (read 4B + write 4B) 64M",
            timeit(lambda: out.copy_(labels)), n * 8)
    h.set_validate(True)
    row("labels    rethinkgen uniform + device validation 64M",
        timeit(lambda: h.dev_corrupt_labels(labels.data_ptr(), 4, idx.data_ptr(), 8, n,
                                            0.5, 10, 5, False, out.data_ptr())), nbytes)
    n2 = 50000
    row("labels    rethinkgen permute 50k (dataset-level, syncs)",
        timeit(lambda: h.dev_corrupt_labels(labels.data_ptr(), 4, idx.data_ptr(), 8, n2,
                                            0.5, 10, 5, True, out.data_ptr())), n2 * 16)
    labels = idx = out = None

    print("Targets (ratios measured in this run):")
    ok = True
    for k, v in results.items():
        if k.startswith("gauss"):
            good = v >= 1.0
            print(f"  [{'met ' if good else 'MISS'}] {k}: {v:.2f}x torch.normal_ (target >= 1)")
        elif k.startswith("pixels"):
            good = v >= 5.0
            print(f"  [{'met ' if good else 'MISS'}] {k}: {v:.2f}x rand+argsort+gather "
                  f"(target >= 5)")
        elif k == "labels_bw_fraction":
            good = v >= 0.7
            print(f"  [{'met ' if good else 'MISS'}] labels: {100 * v:.0f}% of fill bandwidth "
                  f"(target: memory bandwidth, >= 70%)")
        else:
            continue
        ok = ok and good
    return ok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--module-dir", required=True)
    ap.add_argument("--sanitize", action="store_true")
    ap.add_argument("--bench", action="store_true")
    ap.add_argument("--quick", action="store_true", help="fewer/smaller configurations")
    ap.add_argument("--strict-perf", action="store_true",
                    help="exit 1 when a throughput target is missed")
    args = ap.parse_args()
    h = load_harness(args.module_dir)
    print(f"rg_harness backend: {h.backend()} {h.device_name()}")
    t0 = time.time()
    if args.sanitize:
        sanitize_pass(h)
    elif args.bench:
        met = bench(h)
        if args.strict_perf and not met:
            FAILURES.append("throughput targets")
    else:
        ref = load_reference()
        check_permutations(h, ref, args.quick)
        check_labels(h, ref, args.quick)
        check_pixels(h, ref, args.quick)
        check_gaussian(h, ref, args.quick)
    print(f"{len(FAILURES)} failure(s) in {time.time() - t0:.1f} s")
    for f in FAILURES:
        print(f"  FAILED: {f}")
    sys.exit(1 if FAILURES else 0)


if __name__ == "__main__":
    main()
