"""Squared distances for the Gaussian kernel, accumulated over feature blocks, with checkpoints.

|x_i - x_j|^2 is a sum over any split of the features into blocks, so the features of a
random-feature map with any number of filters can be computed one filter block at a time and
folded into the distance matrices, and memory does not grow with the number of filters:

    d = accumulate(features, blocks, n, t, standardize=True, state_dir=..., config=...)
    d.train   # [n, n] float32, lower triangle (and diagonal, 0) valid: training images
    d.test    # [t, n] float32: test image i to training image j

`features(b)` returns block b's features of all n + t images [n + t, d_b] (training images
first).  Each block is centered (and, with `standardize`, scaled to unit variance) per feature
with the statistics of the n training images; centering leaves distances unchanged and keeps the
float32 cross terms accurate.

The train-train matrix is a lazily mapped n x n float32 array of which only the lower triangle is
written (2 n^2 bytes resident: 5 GB at n = 50,000); the kernel matrix of the solvers is made from
it block by block (rethinkgen_tf.kernels.solvers).

Checkpoints (with `state_dir`): `config.json` (what determines the distances; a different
configuration in the directory is refused with one line); `dists.bin.<k>`: a header (magic,
blocks done k, n, t, the configuration's hash), the lower triangle row by row and the test
matrix, fsync'ed; then `progress.json` ({blocks_done, file}, replaced atomically) names it and the
previous file is removed, so a kill at any instant (kill -9 included) leaves progress.json naming
a complete checkpoint (a half-written file is removed on resume).  One is written every `checkpoint_seconds` and
after the last block; a rerun continues after the last one, and since every block adds to the
same float32 arrays in the same order, its result is bit-for-bit that of an uninterrupted run.
A lock (flock on state_dir/.lock) keeps two processes out of one state directory.
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from rethinkgen_tf import results

MAGIC = b"RGKDIST1"
HEADER = struct.Struct("<8sqqq20s")  # magic, blocks done, n, t, sha1 of the configuration
STATE_FILE = "dists.bin"     # dists.bin.<blocks done>: the checkpoint
PROGRESS = "progress.json"   # {blocks_done, file}: which checkpoint is complete
ROW_BLOCK = 2048


def _log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def lazy_zeros(shape, dtype):
    """A zero array whose pages become resident only when written, in 4 KiB pages.  NumPy asks
    the kernel for transparent huge pages on large arrays, and a 2 MiB page spans several rows of
    an n x n matrix, so writing the lower triangle would make all of it resident."""
    import mmap
    size = max(int(np.prod(shape)) * np.dtype(dtype).itemsize, 1)
    buf = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    if hasattr(mmap, "MADV_NOHUGEPAGE"):
        buf.madvise(mmap.MADV_NOHUGEPAGE)
    return np.frombuffer(buf, dtype).reshape(shape)


class Distances:
    """Squared distances: `train` [n, n] (lower triangle valid) and `test` [t, n], float32."""

    def __init__(self, n, t):
        self.n, self.t = n, t
        self.train = lazy_zeros((n, n), np.float32)
        self.test = np.zeros((t, n), np.float32)

    def gather(self, rows, cols) -> np.ndarray:
        """D[rows][:, cols] among training images, float64 (either triangle)."""
        rows, cols = np.asarray(rows), np.asarray(cols)
        lower = rows[:, None] >= cols[None, :]
        return np.where(lower, self.train[np.ix_(rows, cols)], self.train[np.ix_(cols, rows)].T).astype(np.float64)

    def median_distance(self, sample=2000, seed=0) -> float:
        """Median pairwise distance among `sample` random training images (as kernels.median_distance)."""
        if self.n < 2 or sample < 2:
            raise ValueError(f"the median pairwise distance needs at least 2 samples, got {min(self.n, sample)}; "
                             "give the bandwidth explicitly")
        idx = np.sort(np.random.default_rng(seed).choice(self.n, min(sample, self.n), replace=False))
        d = self.gather(idx, idx)
        return float(np.sqrt(np.median(d[np.triu_indices(len(idx), 1)])))


def _config_hash(config) -> bytes:
    return hashlib.sha1(json.dumps(config, sort_keys=True).encode()).digest()


def _save(state_dir: Path, d: Distances, blocks_done, digest):
    """Writes the checkpoint file of `blocks_done` blocks, then points progress.json at it
    (atomically), then removes the previous one: a kill at any instant leaves progress.json
    naming a complete file."""
    path = state_dir / f"{STATE_FILE}.{blocks_done}"
    with open(path, "wb") as f:
        f.write(HEADER.pack(MAGIC, blocks_done, d.n, d.t, digest))
        for i in range(d.n):
            f.write(d.train[i, :i + 1])
        f.write(d.test)
        f.flush()
        os.fsync(f.fileno())
    results.write_json(state_dir / PROGRESS, dict(blocks_done=blocks_done, file=path.name))
    _remove_unreferenced(state_dir, path.name)
    return path


def _remove_unreferenced(state_dir: Path, keep):
    """Checkpoint files other than `keep` (the previous one, or one a kill left half-written)."""
    for f in state_dir.glob(f"{STATE_FILE}.*"):
        if f.name != keep:
            f.unlink(missing_ok=True)


def _load(state_dir: Path, d: Distances, blocks, digest) -> int:
    """Reads the checkpoint progress.json names into d; the number of blocks it holds (0: none)."""
    advice = f"delete {state_dir} to start over"
    if not (state_dir / PROGRESS).exists():
        _remove_unreferenced(state_dir, None)
        return 0
    progress = read_json(state_dir / PROGRESS, advice)
    if not isinstance(progress.get("file"), str):
        raise results.StateError(f"{state_dir / PROGRESS} does not name a checkpoint; {advice}")
    path = state_dir / progress["file"]
    _remove_unreferenced(state_dir, path.name)
    size = HEADER.size + 4 * (d.n * (d.n + 1) // 2 + d.t * d.n)
    try:
        with open(path, "rb") as f:
            head = f.read(HEADER.size)
            magic, done, n, t, h = HEADER.unpack(head.ljust(HEADER.size, b"\0"))
            if (magic != MAGIC or (n, t) != (d.n, d.t) or h != digest or done != progress.get("blocks_done")
                    or not 0 <= done <= blocks):
                raise results.StateError(f"{path} is not a checkpoint of this configuration "
                                         f"(n {n}, t {t}, {done} blocks); {advice}")
            if os.fstat(f.fileno()).st_size != size:
                raise results.StateError(f"{path} has {os.fstat(f.fileno()).st_size} bytes, a checkpoint "
                                         f"of this size has {size}: it is damaged; {advice}")
            for i in range(d.n):
                f.readinto(memoryview(d.train[i, :i + 1]).cast("B"))
            f.readinto(memoryview(d.test).cast("B"))
    except OSError as e:
        raise results.StateError(f"cannot read {path}: {e.strerror or e}; {advice}") from None
    return done


def read_json(path, advice) -> dict:
    """The JSON object in `path` (a file of this experiment's state, or a summary); StateError
    (one line) naming it, then `advice`, if it is damaged.  (results.read_json's advice is a
    training run's, whose flags this experiment does not have.)"""
    try:
        with open(path) as f:
            obj = json.load(f)
    except (ValueError, UnicodeDecodeError) as e:
        raise results.StateError(f"{path} is damaged ({type(e).__name__}: {str(e)[:80]}); {advice}") from None
    if not isinstance(obj, dict):
        raise results.StateError(f"{path} is damaged (not a JSON object); {advice}")
    return obj


def check_state(state_dir, config) -> Optional[dict]:
    """The configuration stored in state_dir (None: none yet).  ValueError (one line) if it is
    not `config`."""
    path = Path(state_dir) / "config.json"
    if not path.exists():
        return None
    stored = read_json(path, f"delete {state_dir} to start over")
    if stored != config:
        diff = sorted(k for k in set(stored) | set(config) if stored.get(k) != config.get(k))
        shown = ", ".join(f"{k}: {stored.get(k)!r} there, {config.get(k)!r} now" for k in diff[:4])
        raise ValueError(f"{state_dir} holds the state of another configuration ({shown}"
                         f"{' ...' if len(diff) > 4 else ''}): rerun that command to finish it, delete "
                         f"{state_dir}, or pass another --state_dir/--out")
    return stored


class StateLock(results.RunLock):
    """results.RunLock with this experiment's message."""

    def __enter__(self):
        try:
            return super().__enter__()
        except results.RunLocked as e:
            raise ValueError(f"{e.run_dir} is in use by process {e.pid or '(unknown)'}, another kernel run of "
                             "this configuration; wait for it to finish, or pass another --state_dir/--out") from None


def _add_block(d: Distances, f, n, standardize, row_block):
    """Adds the squared distances of one feature block f [n + t, d_b] (float32) to d."""
    f = np.asarray(f, np.float32)
    mean = f[:n].mean(0, dtype=np.float64)
    f = f - mean.astype(np.float32)
    if standardize:
        sd = np.sqrt(np.mean(np.square(f[:n], dtype=np.float64), 0))
        sd[sd == 0] = 1.0  # a constant feature: 0 after centering, whatever the scale
        f /= sd.astype(np.float32)
    sq = np.einsum("ij,ij->i", f, f, dtype=np.float64).astype(np.float32)
    tr, te, sq_tr, sq_te = f[:n], f[n:], sq[:n], sq[n:]
    for i0 in range(0, n, row_block):
        i1 = min(i0 + row_block, n)
        g = tr[i0:i1] @ tr[:i1].T
        g *= -2.0
        g += sq_tr[i0:i1, None]
        g += sq_tr[None, :i1]
        np.maximum(g, 0.0, out=g)
        diag = g[:, i0:i1]
        diag[np.triu_indices(i1 - i0)] = 0.0  # the lower triangle only: the array is what a checkpoint holds
        d.train[i0:i1, :i1] += g
    for i0 in range(0, te.shape[0], row_block):
        i1 = min(i0 + row_block, te.shape[0])
        g = te[i0:i1] @ tr.T
        g *= -2.0
        g += sq_te[i0:i1, None]
        g += sq_tr[None, :]
        np.maximum(g, 0.0, out=g)
        d.test[i0:i1] += g


def full_config(config, blocks, n, t, standardize) -> dict:
    """What a state directory's config.json holds: `config` with the block count and sizes."""
    return dict(config or {}, blocks=blocks, n=n, t=t, standardize=bool(standardize))


def finished(state_dir, config) -> bool:
    """Whether state_dir holds the complete accumulation of `config` (a full_config)."""
    state_dir = Path(state_dir)
    try:
        if check_state(state_dir, config) is None:
            return False
        progress = read_json(state_dir / PROGRESS, "")
    except (ValueError, OSError, results.StateError):
        return False
    return (isinstance(progress, dict) and progress.get("blocks_done") == config["blocks"]
            and (state_dir / str(progress.get("file"))).is_file())


def _open_state(state_dir, config) -> Path:
    """state_dir made, a killed writer's temporary files removed, config.json written there if
    none yet (another configuration there: check_state's ValueError)."""
    state_dir = Path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    results.remove_strays(state_dir)
    if check_state(state_dir, config) is None:
        results.write_json(state_dir / "config.json", config)
    return state_dir


def save_state(state_dir, d: Distances, config) -> Path:
    """Writes the distances d as the finished state of `config` (a full_config: d holds its
    config["blocks"] blocks) into state_dir, which a run of that configuration resumes with
    nothing left to accumulate.  The checkpoint's own protocol: config.json, then the file, then
    progress.json naming it."""
    return _save(_open_state(state_dir, config), d, config["blocks"], _config_hash(config))


def start_from(state_dir, source, source_config, config) -> int:
    """Copies the finished state in `source` (of source_config, a full_config of fewer blocks
    that are config's first blocks: the caller checks that) into the empty state_dir as config's
    checkpoint after those blocks; returns their number.  Call under StateLock(state_dir)."""
    source, state_dir = Path(source), Path(state_dir)
    advice = "pass a finished state (a run with --keep_state) to start from, or none"
    if not finished(source, source_config):
        raise results.StateError(f"{source} holds no finished accumulation of {source_config.get('blocks')} "
                                 f"blocks; {advice}")
    progress = read_json(source / PROGRESS, advice)
    blocks, src = progress["blocks_done"], source / progress["file"]
    _open_state(state_dir, config)
    dst = state_dir / f"{STATE_FILE}.{blocks}"
    tmp = state_dir / f".{dst.name}{results.TMP_TAG}"
    try:
        with open(src, "rb") as f, open(tmp, "wb") as g:
            magic, done, n, t, digest = HEADER.unpack(f.read(HEADER.size))
            if magic != MAGIC or digest != _config_hash(source_config) or done != blocks:
                raise results.StateError(f"{src} is not the checkpoint its directory names; {advice}")
            g.write(HEADER.pack(MAGIC, blocks, n, t, _config_hash(config)))
            while chunk := f.read(1 << 24):
                g.write(chunk)
            g.flush()
            os.fsync(g.fileno())
        os.replace(tmp, dst)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise results.StateError(f"cannot copy {src} into {state_dir}: {e.strerror or e}") from None
    results.write_json(state_dir / PROGRESS, dict(blocks_done=blocks, file=dst.name))
    return blocks


def accumulate(features: Callable[[int], np.ndarray], blocks: int, n: int, t: int, standardize=False,
               state_dir=None, config: Optional[dict] = None, checkpoint_seconds=600.0, row_block=ROW_BLOCK,
               progress: Optional[Callable] = _log, snapshots: Optional[dict] = None) -> Distances:
    """The squared distances of the concatenated standardized blocks features(0), ...,
    features(blocks - 1) (each [n + t, d_b]: n training images, then t test images).

    With state_dir: resumes from its checkpoint and writes one every checkpoint_seconds (0: every
    block) and after the last block; `config` (a JSON-able dict: everything that determines the
    features, with the block split) is stored, and a different one there is refused.  Call under
    StateLock(state_dir).

    snapshots {k: (directory, config_k)}: once the first k blocks are in, save_state writes them
    as the finished state of config_k (the configuration of a run with those k blocks only:
    fewer filters of the same feature map), unless that directory holds it already.  One that a
    resumed run has passed is skipped with a line: `skipped_snapshots` lists them."""
    d = Distances(n, t)
    done = 0
    config = full_config(config, blocks, n, t, standardize)
    snapshots = {k: (Path(sd), full_config(c, k, n, t, standardize)) for k, (sd, c) in (snapshots or {}).items()}
    if state_dir is not None:
        state_dir = _open_state(state_dir, config)  # removes a temporary checkpoint of a killed run
        digest = _config_hash(config)
        t0 = time.time()
        done = _load(state_dir, d, blocks, digest)
        if done and progress:
            progress(f"  resuming {state_dir}: {done}/{blocks} blocks done (read in {time.time() - t0:.0f} s)")
    d.skipped_snapshots = []
    for k, (sd, c) in sorted(snapshots.items()):
        if k <= done and not finished(sd, c):
            d.skipped_snapshots.append(k)
            if progress:
                progress(f"  snapshot of the first {k} blocks: cannot be written, the accumulation resumed after "
                         f"block {done}; delete {state_dir} to start over with it")
    t_start, t_saved = time.time(), time.time()
    # wall and CPU seconds (all threads: on a busy machine, CPU seconds / cores estimates a quiet machine's wall)
    timing = dict(features_seconds=0.0, distances_seconds=0.0, features_cpu_seconds=0.0, distances_cpu_seconds=0.0,
                  checkpoint_seconds=0.0)
    for b in range(done, blocks):
        t0, c0 = time.time(), time.process_time()
        f = features(b)
        t1, c1 = time.time(), time.process_time()
        _add_block(d, f, n, standardize, row_block)
        del f
        t2, c2 = time.time(), time.process_time()
        timing["features_seconds"] += t1 - t0
        timing["distances_seconds"] += t2 - t1
        timing["features_cpu_seconds"] += c1 - c0
        timing["distances_cpu_seconds"] += c2 - c1
        last = b == blocks - 1
        if state_dir is not None and (last or time.time() - t_saved >= checkpoint_seconds):
            path = _save(state_dir, d, b + 1, digest)
            t_saved = time.time()
            timing["checkpoint_seconds"] += t_saved - t2
            if progress and (last or t_saved - t2 > 1):
                progress(f"  checkpoint: {b + 1} blocks in {path} ({path.stat().st_size / 2**30:.2f} GiB, "
                         f"{t_saved - t2:.0f} s)")
        if b + 1 in snapshots and not finished(*snapshots[b + 1]):
            t3 = time.time()
            path = save_state(snapshots[b + 1][0], d, snapshots[b + 1][1])
            timing["checkpoint_seconds"] += time.time() - t3
            if progress:
                progress(f"  snapshot: the first {b + 1} blocks as a finished state in {path.parent} "
                         f"({time.time() - t3:.0f} s)")
        if progress:
            el = time.time() - t_start
            per = el / (b + 1 - done)
            progress(f"  block {b + 1}/{blocks}: {el:.0f} s elapsed ({per:.1f} s per block; this one: features "
                     f"{t1 - t0:.1f} s (cpu {c1 - c0:.1f} s), distances {t2 - t1:.1f} s (cpu {c2 - c1:.1f} s)), "
                     f"ETA {per * (blocks - b - 1):.0f} s")
    d.blocks_resumed, d.timing = done, timing
    return d
