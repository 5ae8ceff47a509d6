"""Pure-TensorFlow implementation of the randomizations.

Used when the compiled op cannot be loaded (no compiler, TensorFlow version
changed).  Same outputs as the op, bit for bit (same rules as
``rethinkgen_tf.reference``), written with ordinary TensorFlow ops so it works
in graphs, ``tf.data`` and SavedModels; much slower (the Fisher-Yates swap
chain runs as a ``tf.while_loop``).  All 32-bit words are carried in uint64.
"""
import tensorflow as tf

from rethinkgen_tf import reference as ref

U64 = tf.uint64
_M32 = 0xFFFFFFFF


def _u(x):
    return tf.constant(x, U64)


def _key(seed):
    s = tf.bitcast(tf.cast(seed, tf.int64), U64)
    return tf.bitwise.bitwise_and(s, _u(_M32)), tf.bitwise.right_shift(s, _u(32))


def philox(c0, c1, c2, c3, k0, k1):
    """Philox4x32-10 on uint64 tensors holding 32-bit words."""
    m32, s32 = _u(_M32), _u(32)
    for r in range(10):
        p0 = _u(0xD2511F53) * c0
        p1 = _u(0xCD9E8D57) * c2
        kr0 = tf.bitwise.bitwise_and(k0 + _u(r * 0x9E3779B9), m32)
        kr1 = tf.bitwise.bitwise_and(k1 + _u(r * 0xBB67AE85), m32)
        c0, c1, c2, c3 = (
            tf.bitwise.bitwise_xor(tf.bitwise.bitwise_xor(tf.bitwise.right_shift(p1, s32), c1), kr0),
            tf.bitwise.bitwise_and(p1, m32),
            tf.bitwise.bitwise_xor(tf.bitwise.bitwise_xor(tf.bitwise.right_shift(p0, s32), c3), kr1),
            tf.bitwise.bitwise_and(p0, m32),
        )
    return c0, c1, c2, c3


def _blocks(seed, purpose, index, block):
    """Words of block `block` (uint64 tensor) for int64 `index`, broadcast."""
    idx = tf.bitcast(tf.cast(index, tf.int64), U64)
    lo = tf.bitwise.bitwise_and(idx, _u(_M32))
    hi = tf.bitwise.right_shift(idx, _u(32))
    block = tf.cast(block, U64)
    shape = tf.broadcast_dynamic_shape(tf.shape(lo), tf.shape(block))
    k0, k1 = _key(seed)
    return philox(tf.broadcast_to(block, shape), tf.broadcast_to(_u(purpose), shape),
                  tf.broadcast_to(lo, shape), tf.broadcast_to(hi, shape), k0, k1)


def uniform_index(hi, lo, m):
    m = tf.cast(m, U64)
    return tf.bitwise.right_shift(hi * m + tf.bitwise.right_shift(lo * m, _u(32)), _u(32))


def corrupt_labels(labels, indices, corrupt_prob, num_classes, seed, mode="uniform"):
    thr = _u(ref.corrupt_threshold(corrupt_prob))
    w0, w1, w2, _ = _blocks(seed, ref.PURPOSE["label_corrupt"], indices, 0)
    chosen = w0 < thr
    if mode == "uniform":
        new = tf.cast(uniform_index(w1, w2, num_classes), labels.dtype)
        return tf.where(chosen, new, labels)
    flat_lab = tf.reshape(labels, [-1])
    flat_idx = tf.reshape(tf.cast(indices, tf.int64), [-1])
    pos = tf.reshape(tf.where(tf.reshape(chosen, [-1])), [-1])
    order = tf.argsort(tf.gather(flat_idx, pos), stable=True)
    pos = tf.gather(pos, order)
    perm = fisher_yates(tf.size(pos, out_type=tf.int64), seed, ref.PURPOSE["label_permute"],
                        tf.zeros([1], tf.int64))[0]
    new = tf.gather(flat_lab, tf.gather(pos, perm))
    out = tf.tensor_scatter_nd_update(flat_lab, pos[:, None], new)
    return tf.reshape(out, tf.shape(labels))


def fisher_yates(n, seed, purpose, index):
    """Permutations of range(n), one per entry of the 1-D int64 `index`."""
    n = tf.cast(n, tf.int64)
    batch = tf.size(index)
    steps = tf.maximum(n - 1, 0)
    t = tf.range(steps)
    w = _blocks(seed, purpose, index[:, None], (t // 2)[None, :])
    odd = tf.equal(t % 2, 1)[None, :]
    hi = tf.where(odd, w[2], w[0])
    lo = tf.where(odd, w[3], w[1])
    draws = tf.cast(uniform_index(hi, lo, tf.cast(n - t, U64)[None, :]), tf.int64)
    perm = tf.tile(tf.range(n)[None, :], [batch, 1])
    rows = tf.range(batch, dtype=tf.int64)

    def body(step, perm):
        j = n - 1 - step
        r = draws[:, step]
        a = perm[:, j]
        b = tf.gather(perm, r, batch_dims=1)
        jj = tf.stack([rows, tf.fill([batch], j)], axis=1)
        perm = tf.tensor_scatter_nd_update(perm, jj, b)
        return step + 1, tf.tensor_scatter_nd_update(perm, tf.stack([rows, r], axis=1), a)

    _, perm = tf.while_loop(lambda s, p: s < steps, body, (tf.constant(0, tf.int64), perm))
    return perm


def permute_pixels(images, indices, seed, mode="per_example", unit="position"):
    shape = tf.shape(images)
    h, w, c = shape[-3], shape[-2], shape[-1]
    if unit == "value":
        units = tf.reshape(images, [-1, h * w * c, 1])
    else:
        units = tf.reshape(images, [-1, h * w, c])
    n = tf.shape(units, out_type=tf.int64)[1]
    if mode == "shared":
        perm = fisher_yates(n, seed, ref.PURPOSE["pixels_shared"], tf.zeros([1], tf.int64))
        out = tf.gather(units, perm[0], axis=1)
    else:
        idx = tf.reshape(tf.cast(indices, tf.int64), [-1])
        perm = fisher_yates(n, seed, ref.PURPOSE["pixels_per_example"], idx)
        out = tf.gather(units, perm, batch_dims=1)
    return tf.reshape(out, shape)


# ---- Gaussian (float32 operation for operation as randomize.h) ----------
# Every rounded float operation goes through _op, which puts a Snapshot after
# it: grappler's constant folding would otherwise rewrite chains such as
# (u - w) + 1 into (u + 1) - w inside tf.function, changing the last bit.
F32 = tf.float32


def _op(x):
    return tf.raw_ops.Snapshot(input=x)


def _c(v):
    return tf.constant(v, F32)


def _mul(a, b):
    return _op(a * b)


def _add(a, b):
    return _op(a + b)


def _sub(a, b):
    return _op(a - b)


def _log_f32(x):
    bits = tf.bitcast(x, tf.uint32)
    mb = tf.bitwise.bitwise_or(tf.bitwise.bitwise_and(bits, tf.constant(0x007FFFFF, tf.uint32)),
                               tf.constant(0x3F800000, tf.uint32))
    big = tf.cast(tf.bitcast(mb, F32) > 1.41421356, tf.uint32)  # halve mantissas above sqrt 2
    m = tf.bitcast(mb - tf.bitwise.left_shift(big, tf.constant(23, tf.uint32)), F32)
    e = tf.cast(tf.bitwise.right_shift(bits, tf.constant(23, tf.uint32)), tf.int32) - 127 \
        + tf.cast(big, tf.int32)
    f = _sub(m, _c(1.0))
    z = _mul(f, f)
    y = tf.fill(tf.shape(f), _c(ref._LOG_COEF[0]))
    for coef in ref._LOG_COEF[1:]:
        y = _add(_mul(y, f), _c(coef))
    y = _mul(_mul(y, f), z)
    fe = tf.cast(e, F32)
    y = _add(y, _mul(_c(-2.12194440E-4), fe))
    y = _sub(y, _mul(_c(0.5), z))
    r = _add(f, y)
    return _add(r, _mul(_c(0.693359375), fe))


def _sincos_quarter(a):
    z = _mul(a, a)
    t = _mul(_c(-1.9515295891E-4), z)
    t = _add(t, _c(8.3321608736E-3))
    t = _mul(t, z)
    t = _sub(t, _c(1.6666654611E-1))
    t = _mul(_mul(t, z), a)
    s = _add(t, a)
    u = _mul(_c(2.443315711809948E-5), z)
    u = _sub(u, _c(1.388731625493765E-3))
    u = _mul(u, z)
    u = _add(u, _c(4.166664568298827E-2))
    u = _mul(_mul(u, z), z)
    u = _sub(u, _mul(_c(0.5), z))
    return s, _add(u, _c(1.0))


def _gaussian_pair(x1, x2):
    u1 = _add(_mul(tf.cast(tf.cast(x1, tf.uint32), F32), _c(2.3283064365386963e-10)),
              _c(1.16415321826934814453125e-10))
    r = _op(tf.sqrt(_mul(_c(-2.0), _log_f32(u1))))
    octant = tf.bitwise.right_shift(x2, _u(29))
    k = tf.bitwise.bitwise_and(x2, _u(0x1FFFFFFF))
    odd = tf.equal(tf.bitwise.bitwise_and(octant, _u(1)), _u(1))
    kk = tf.where(odd, _u(0x20000000) - k, k)
    a = _mul(_mul(tf.cast(tf.cast(kk, tf.uint32), F32), _c(1.862645149230957e-09)),
             _c(0.785398163397448309616))
    s, c = _sincos_quarter(a)
    sb, cb = tf.where(odd, c, s), tf.where(odd, s, c)
    q = tf.bitwise.right_shift(octant, _u(1))
    sin_t = tf.where(q == 0, sb, tf.where(q == 1, cb, tf.where(q == 2, -sb, -cb)))
    cos_t = tf.where(q == 0, cb, tf.where(q == 1, -sb, tf.where(q == 2, -cb, sb)))
    return _mul(r, cos_t), _mul(r, sin_t)


def gaussian_images(indices, seed, shape, mean, stddev, dtype=tf.float32):
    shape = tf.cast(shape, tf.int64)
    n = tf.reduce_prod(shape)
    nblocks = (n + 3) // 4
    idx = tf.reshape(tf.cast(indices, tf.int64), [-1, 1])
    w = _blocks(seed, ref.PURPOSE["gaussian"], idx, tf.range(nblocks)[None, :])
    z0, z1 = _gaussian_pair(w[0], w[1])
    z2, z3 = _gaussian_pair(w[2], w[3])
    z = tf.reshape(tf.stack([z0, z1, z2, z3], axis=-1), [tf.shape(idx)[0], -1])[:, :n]
    chan = tf.range(n) % shape[-1]
    mean = tf.gather(tf.cast(mean, F32), chan)
    stddev = tf.gather(tf.cast(stddev, F32), chan)
    out = _add(mean, _mul(stddev, z))
    out = tf.cast(out, dtype)
    return tf.reshape(out, tf.concat([tf.shape(indices, out_type=tf.int64), shape], 0))
