"""NumPy reference of the randomizations: the specification, executable.

Slow and exact.  Every line mirrors ``csrc/rethinkgen/randomize.h`` (see
``docs/randomization.md``); the compiled op, the pure-TensorFlow fallback, the
pybind11 module and the CUDA kernels are tested against these functions bit
for bit.  This module imports NumPy only (no TensorFlow), so it also runs on
machines without TensorFlow, such as the GPU harness.
"""
import numpy as np

M0, M1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
W0, W1 = 0x9E3779B9, 0xBB67AE85
MASK32 = np.uint64(0xFFFFFFFF)

PURPOSE = {
    "label_corrupt": 0x4C41424C,
    "label_permute": 0x4C50524D,
    "pixels_shared": 0x50495853,
    "pixels_per_example": 0x50495845,
    "gaussian": 0x47415553,
}


def philox4x32(counter, key):
    """Philox4x32-10.  counter: uint32 [..., 4]; key: (k0, k1) ints.

    Returns uint32 [..., 4]."""
    c = np.asarray(counter, dtype=np.uint32).astype(np.uint64)
    c0, c1, c2, c3 = c[..., 0], c[..., 1], c[..., 2], c[..., 3]
    k0, k1 = int(key[0]) & 0xFFFFFFFF, int(key[1]) & 0xFFFFFFFF
    for _ in range(10):
        p0 = M0 * c0
        p1 = M1 * c2
        hi0, lo0 = p0 >> np.uint64(32), p0 & MASK32
        hi1, lo1 = p1 >> np.uint64(32), p1 & MASK32
        c0, c1, c2, c3 = hi1 ^ c1 ^ np.uint64(k0), lo1, hi0 ^ c3 ^ np.uint64(k1), lo0
        k0 = (k0 + W0) & 0xFFFFFFFF
        k1 = (k1 + W1) & 0xFFFFFFFF
    return np.stack([c0, c1, c2, c3], axis=-1).astype(np.uint32)


def key_from_seed(seed):
    s = int(seed) & 0xFFFFFFFFFFFFFFFF
    return s & 0xFFFFFFFF, s >> 32


def blocks(seed, purpose, index, block):
    """Philox blocks for broadcastable int arrays ``index`` and ``block``."""
    index = np.asarray(index, dtype=np.int64).astype(np.uint64)
    block = np.asarray(block, dtype=np.uint64)
    index, block = np.broadcast_arrays(index, block)
    ctr = np.stack([block & MASK32, np.full(block.shape, purpose, np.uint64),
                    index & MASK32, index >> np.uint64(32)], axis=-1)
    return philox4x32(ctr, key_from_seed(seed))


def uniform_index(hi, lo, m):
    """floor((hi * 2^32 + lo) * m / 2^64), m <= 2^32."""
    hi = np.asarray(hi, np.uint64)
    lo = np.asarray(lo, np.uint64)
    m = np.asarray(m, np.uint64)
    return ((hi * m + ((lo * m) >> np.uint64(32))) >> np.uint64(32)).astype(np.uint32)


def corrupt_threshold(p):
    p = float(p)
    if not p > 0.0:
        return 0
    if p >= 1.0:
        return 1 << 32
    return int(p * 4294967296.0)


def fisher_yates(n, seed, purpose, index):
    """The permutation of range(n) drawn for (seed, purpose, index)."""
    perm = np.arange(n, dtype=np.int64)
    if n < 2:
        return perm
    steps = n - 1
    w = blocks(seed, purpose, index, np.arange((steps + 1) // 2))
    t = np.arange(steps)
    half = 2 * (t % 2)
    words = w[t // 2]
    r = uniform_index(words[t, half], words[t, half + 1], n - t)
    for step in range(steps):
        j = n - 1 - step
        k = int(r[step])
        perm[j], perm[k] = perm[k], perm[j]
    return perm


FEISTEL_MIN_ITEMS = 4096  # label_permutation: Fisher-Yates up to here, Feistel above
FEISTEL_ROUNDS = 8
_M0_32, _M1_32 = np.uint32(0xD2511F53), np.uint32(0xCD9E8D57)


def feistel_key(seed, m):
    """(round keys, m, low bits, high bits) of the Feistel bijection for m items."""
    keys = blocks(seed, PURPOSE["label_permute"], m, np.arange(FEISTEL_ROUNDS // 4))
    b = (int(m) - 1).bit_length()
    return keys.reshape(-1), int(m), b - b // 2, b // 2


def _feistel_round(v, k):
    with np.errstate(over="ignore"):
        h = (v ^ np.uint32(k)) * _M0_32
        h ^= h >> np.uint32(16)
        return h * _M1_32


def feistel_encrypt(fkey, x):
    """One pass of the Feistel network over uint32 array x (< 2^b)."""
    keys, _, lo, hi = fkey
    x = np.asarray(x, np.uint32)
    left, right = x >> np.uint32(lo), x & np.uint32((1 << lo) - 1)
    for r in range(0, FEISTEL_ROUNDS, 2):
        left = left ^ (_feistel_round(right, keys[r]) >> np.uint32(32 - hi))
        right = right ^ (_feistel_round(left, keys[r + 1]) >> np.uint32(32 - lo))
    return (left << np.uint32(lo)) | right


def feistel_permutation(m, seed):
    """perm[k] = the first of E(k), E(E(k)), ... below m (cycle-walking)."""
    fkey = feistel_key(seed, m)
    x = feistel_encrypt(fkey, np.arange(m, dtype=np.uint32))
    out = x.copy()
    walking = np.nonzero(x >= m)[0]
    while walking.size:
        out[walking] = feistel_encrypt(fkey, out[walking])
        walking = walking[out[walking] >= m]
    return out.astype(np.int64)


def label_permutation(m, seed):
    """Mode "permute" (v2): item k of the m selected gets the label of item perm[k]."""
    if m <= FEISTEL_MIN_ITEMS:
        return fisher_yates(m, seed, PURPOSE["label_permute"], 0)
    return feistel_permutation(m, seed)


def _check_indices(indices):
    if np.any(indices < 0):
        raise ValueError("indices must be >= 0")


def corrupt_labels(labels, indices, corrupt_prob, num_classes, seed, mode="uniform"):
    labels = np.asarray(labels)
    indices = np.asarray(indices)
    if labels.shape != indices.shape:
        raise ValueError("labels and indices must have the same shape")
    if not 0.0 <= float(corrupt_prob) <= 1.0:
        raise ValueError("corrupt_prob must be in [0, 1]")
    if num_classes < 1:
        raise ValueError("num_classes must be >= 1")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError("labels must be in [0, num_classes)")
    _check_indices(indices)
    w = blocks(seed, PURPOSE["label_corrupt"], indices.reshape(-1), 0)
    chosen = w[:, 0].astype(np.uint64) < np.uint64(corrupt_threshold(corrupt_prob))
    flat = labels.reshape(-1)
    out = flat.copy()
    if mode == "uniform":
        new = uniform_index(w[:, 1], w[:, 2], num_classes).astype(labels.dtype)
        out[chosen] = new[chosen]
    elif mode == "permute":
        pos = np.nonzero(chosen)[0]
        pos = pos[np.argsort(indices.reshape(-1)[pos], kind="stable")]
        if len(pos) >= 2:
            out[pos] = flat[pos[label_permutation(len(pos), seed)]]
    else:
        raise ValueError(f"unknown mode {mode!r}")
    return out.reshape(labels.shape)


def pixel_permutation(h, w, c, seed, index=0, mode="per_example", unit="position"):
    """The permutation of units (positions or values) used for one example."""
    units = h * w * (c if unit == "value" else 1)
    if mode == "shared":
        return fisher_yates(units, seed, PURPOSE["pixels_shared"], 0)
    return fisher_yates(units, seed, PURPOSE["pixels_per_example"], index)


def permute_pixels(images, indices, seed, mode="per_example", unit="position"):
    images = np.asarray(images)
    indices = np.asarray(indices)
    if images.ndim < 3:
        raise ValueError("images must have shape [..., H, W, C]")
    if indices.shape != images.shape[:-3]:
        raise ValueError("indices must have shape images.shape[:-3]")
    if mode not in ("shared", "per_example") or unit not in ("position", "value"):
        raise ValueError("bad mode or unit")
    _check_indices(indices)
    h, w, c = images.shape[-3:]
    units = images.reshape(-1, h * w * c if unit == "value" else h * w,
                           1 if unit == "value" else c)
    out = np.empty_like(units)
    idx = indices.reshape(-1)
    for b in range(units.shape[0]):
        perm = pixel_permutation(h, w, c, seed, idx[b], mode, unit)
        out[b] = units[b][perm]
    return out.reshape(images.shape)


# ---- Gaussian: float32 Box-Muller, operation for operation as in C++ ------
f32 = np.float32

_LOG_COEF = [7.0376836292E-2, -1.1514610310E-1, 1.1676998740E-1, -1.2420140846E-1,
             1.4249322787E-1, -1.6668057665E-1, 2.0000714765E-1, -2.4999993993E-1,
             3.3333331174E-1]


def log_f32(x):
    x = np.asarray(x, f32)
    bits = x.view(np.uint32)
    e = (bits >> np.uint32(23)).astype(np.int32) - 127
    m = ((bits & np.uint32(0x007FFFFF)) | np.uint32(0x3F800000)).view(f32)
    big = m > f32(1.41421356)
    m = np.where(big, m * f32(0.5), m)
    e = np.where(big, e + 1, e)
    f = m - f32(1.0)
    z = f * f
    y = np.full_like(f, f32(_LOG_COEF[0]))
    for coef in _LOG_COEF[1:]:
        y = y * f + f32(coef)
    y = (y * f) * z
    fe = e.astype(f32)
    y = y + f32(-2.12194440E-4) * fe
    y = y - f32(0.5) * z
    r = f + y
    return r + f32(0.693359375) * fe


def sincos_quarter(a):
    z = a * a
    t = f32(-1.9515295891E-4) * z
    t = t + f32(8.3321608736E-3)
    t = t * z
    t = t - f32(1.6666654611E-1)
    t = (t * z) * a
    s = t + a
    u = f32(2.443315711809948E-5) * z
    u = u - f32(1.388731625493765E-3)
    u = u * z
    u = u + f32(4.166664568298827E-2)
    u = (u * z) * z
    u = u - f32(0.5) * z
    return s, u + f32(1.0)


def gaussian_pair(x1, x2):
    x1 = np.asarray(x1, np.uint32)
    x2 = np.asarray(x2, np.uint32)
    u1 = x1.astype(f32) * f32(2.3283064365386963e-10) + f32(1.16415321826934814453125e-10)
    r = np.sqrt(f32(-2.0) * log_f32(u1))
    octant = x2 >> np.uint32(29)
    k = x2 & np.uint32(0x1FFFFFFF)
    odd = (octant & np.uint32(1)) != 0
    kk = np.where(odd, np.uint32(0x20000000) - k, k)
    a = (kk.astype(f32) * f32(1.862645149230957e-09)) * f32(0.785398163397448309616)
    s, c = sincos_quarter(a)
    sb, cb = np.where(odd, c, s), np.where(odd, s, c)
    q = octant >> np.uint32(1)
    sin_t = np.select([q == 0, q == 1, q == 2], [sb, cb, -sb], -cb)
    cos_t = np.select([q == 0, q == 1, q == 2], [cb, -sb, -cb], sb)
    return r * cos_t, r * sin_t


def standard_normals(seed, index, n):
    """The n standard normals (float32) of example ``index``."""
    nblocks = (n + 3) // 4
    w = blocks(seed, PURPOSE["gaussian"], index, np.arange(nblocks))
    z = np.empty((nblocks, 4), f32)
    z[:, 0], z[:, 1] = gaussian_pair(w[:, 0], w[:, 1])
    z[:, 2], z[:, 3] = gaussian_pair(w[:, 2], w[:, 3])
    return z.reshape(-1)[:n]


def gaussian_images(indices, seed, shape, mean, stddev, dtype=np.float32):
    indices = np.asarray(indices)
    shape = tuple(int(s) for s in shape)
    mean = np.asarray(mean, f32).reshape(-1)
    stddev = np.asarray(stddev, f32).reshape(-1)
    if not shape or min(shape) < 1:
        raise ValueError("shape entries must be >= 1")
    if mean.shape != (shape[-1],) or stddev.shape != (shape[-1],):
        raise ValueError("mean and stddev must have length shape[-1]")
    if np.any(stddev < 0) or not np.all(np.isfinite(stddev)) or not np.all(np.isfinite(mean)):
        raise ValueError("stddev must be finite and >= 0, mean finite")
    _check_indices(indices)
    n = int(np.prod(shape))
    c = shape[-1]
    chan = np.arange(n) % c
    out = np.empty((indices.size, n), f32)
    for b, i in enumerate(indices.reshape(-1)):
        z = standard_normals(seed, int(i), n)
        out[b] = mean[chan] + stddev[chan] * z
    # float16 / bfloat16 (ml_dtypes): NumPy's casts round to nearest even.
    return out.astype(dtype).reshape(indices.shape + shape)


def derive_seed(seed, stream):
    """An independent int64 seed for a named stream (e.g. "test")."""
    tag = int.from_bytes(stream.encode("utf-8")[:8].ljust(8, b"\0"), "little")
    w = philox4x32(np.array([tag & 0xFFFFFFFF, tag >> 32, 0x53454544, 0], np.uint32),
                   key_from_seed(seed))
    v = int(w[0]) | (int(w[1]) << 32)
    return v - (1 << 64) if v >= 1 << 63 else v
