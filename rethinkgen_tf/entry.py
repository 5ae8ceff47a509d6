"""What every command-line entry point shares: a quiet TensorFlow import, and
errors as one line.

    from rethinkgen_tf import entry
    entry.run(main)        # absl app.run: bad flags, errors, Ctrl-C -> one line

Loading TensorFlow prints C++ log lines on some CPUs:

On CPUs where TensorFlow turns oneDNN on by default (AVX-512 VNNI/BF16, AMX),
loading its two shared libraries prints, before absl logging is initialized
and so whatever TF_CPP_MIN_LOG_LEVEL says, two pairs of lines:

    WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
    I0000 00:00:... port.cc:153] oneDNN custom operations are on. ...

`import_tensorflow()` loads TensorFlow with file descriptor 2 pointed at a
temporary file, then writes back to stderr every line it caught except those
(so real errors during the import still reach the user).  It changes nothing
about oneDNN itself: see BUILD.md for what oneDNN changes and how to choose.
The entry-point packages (`experiments`, `benchmarks`) call it first, so every
command shows only our output.

`run(main)` is absl's `app.run` with the project's error contract: a bad
flag (a non-finite number, an argument that is not a flag, a flagfile that is
not UTF-8 included), an invalid setting, missing or damaged data or state, a
locked run directory, a full disk, running out of memory, Ctrl-C or SIGTERM
each end the program with one line on stderr (`error: ...`, exit 1;
`interrupted; ...`, exit 130; `terminated; ...`, exit 143) and no traceback.
Ctrl-C and SIGTERM unwind like an error (locks released, the last checkpoint
kept: a training run checkpoints every finished epoch), so rerunning the same
command resumes.  Before that, while TensorFlow imports, `catch_signals_early`
(called first by the entry-point packages) ends the program at once with the
same line.
"""
import contextlib
import errno
import math
import os
import re
import signal
import sys
import tempfile
import threading

INTERRUPTED = "interrupted; rerun the same command to resume"
TERMINATED = "terminated (SIGTERM); rerun the same command to resume"


class Terminated(KeyboardInterrupt):
    """SIGTERM (what schedulers send before a time limit), raised in the main thread like
    Ctrl-C's KeyboardInterrupt so that the same clean-up runs on the way out."""


def catch_signals_early():
    """Ctrl-C and SIGTERM from now until `run` (or `errors`) takes over end the program at
    once with one line and exit 130 / 143: nothing is written while the program starts, and
    TensorFlow's import takes seconds.  A signal the process inherited as ignored stays
    ignored.  The line goes to the stderr of this moment (import_tensorflow points file
    descriptor 2 elsewhere while it imports)."""
    if threading.current_thread() is not threading.main_thread():
        return
    try:
        fd = os.dup(2)
    except OSError:
        return

    def early(signum, frame):
        line = INTERRUPTED if signum == signal.SIGINT else TERMINATED
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os._exit(128 + signum)

    early.rethinkgen_early = True
    for sig in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(sig) is not signal.SIG_IGN:
            signal.signal(sig, early)


def _raise_terminated(signum, frame):
    raise Terminated()


@contextlib.contextmanager
def _signals_raise():
    """Within: Ctrl-C raises KeyboardInterrupt and SIGTERM Terminated in the main thread
    (replacing catch_signals_early's handlers and SIGTERM's default, which ends the process
    without a word); handlers set by someone else and inherited ignored signals are kept."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    new = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: _raise_terminated}
    for sig, old in saved.items():
        if old is signal.SIG_DFL or getattr(old, "rethinkgen_early", False):
            signal.signal(sig, new[sig])
    try:
        yield
    finally:
        for sig, old in saved.items():
            signal.signal(sig, old)

NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|[IW]\d{4} [\d:. ]+\d+ port\.cc:\d+\] oneDNN custom operations are on"
    r"|[IW]\d{4} [\d:. ]+\d+ cpu_feature_guard\.cc:\d+\] "
    r"|To enable the following instructions: .*rebuild TensorFlow with the appropriate)")


def is_noise(line):
    """Whether a stderr line is one of TensorFlow's load-time log lines."""
    return bool(NOISE.match(line))


def import_tensorflow():
    """`import tensorflow`, minus its load-time log lines on stderr; returns the module."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no usable fd 2: nothing to hide
        import tensorflow
        return tensorflow
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            import tensorflow
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            text = caught.read().decode(errors="replace")
            kept = [line for line in text.splitlines(keepends=True) if not is_noise(line)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()
    return tensorflow


def fail(message, code=1):
    """Ends the program with one line on stderr, skipping interpreter teardown
    (after a failed write TensorFlow's and h5py's finalizers can crash it)."""
    sys.stdout.flush()
    sys.stderr.write(message.rstrip().replace("\n", " ") + "\n")
    sys.stderr.flush()
    os._exit(code)


def one_line(e):
    """The message of an exception, as the one line the user sees."""
    if isinstance(e, Terminated):
        return TERMINATED
    if isinstance(e, KeyboardInterrupt):
        return INTERRUPTED
    if _is_oom(e):
        detail = (str(e).strip().splitlines() or [type(e).__name__])[0]
        detail = re.sub(r"\s+", " ", detail)[:160]
        return f"error: out of memory ({detail}); {_reduce_advice()}"
    if _is_enospc(e):
        filename = getattr(e, "filename", None)
        where = f" writing {filename}" if filename else ""
        return (f"error: the disk is full{where}; free some space and rerun the same "
                "command to resume (finished epochs are kept)")
    if isinstance(e, OSError) and e.strerror and e.filename:
        return f"error: {e.filename}: {e.strerror}"
    return f"error: {e}"


@contextlib.contextmanager
def errors():
    """Turns the errors a user can cause or fix into one line and an exit code; within it,
    Ctrl-C and SIGTERM raise (KeyboardInterrupt, Terminated) and so end the same way."""
    from rethinkgen_tf.data import DataError
    try:
        with _signals_raise():
            yield
    except BrokenPipeError:  # the reader of our output went away (| head): nothing to say
        os._exit(1)
    except KeyboardInterrupt as e:
        fail(one_line(e), 143 if isinstance(e, Terminated) else 130)
    except MemoryError as e:  # NumPy's _ArrayMemoryError included
        fail(one_line(e))
    except (ValueError, DataError, OSError) as e:
        fail(one_line(e))
    except Exception as e:  # TensorFlow's and h5py's own errors: one line if a full disk or OOM
        if _is_enospc(e) or _is_oom(e):
            fail(one_line(e))
        raise


# The flags whose smaller values need less memory, in the order the advice names them.
REDUCE = ("batch_size", "train_size", "test_size", "n", "test_n", "conv_block", "rademacher_n",
          "train_eval_size", "image_size")


def _reduce_advice():
    """What to reduce after running out of memory: the size flags of this command that exist."""
    try:
        from absl import flags
        names = [name for name in REDUCE if name in flags.FLAGS]
        has_model = "model" in flags.FLAGS or "models" in flags.FLAGS
    except ImportError:
        names, has_model = [], False
    things = ["--" + name for name in names] + (["the model's size"] if has_model else [])
    if not things:
        return "reduce the problem's size"
    return "reduce " + (", ".join(things[:-1]) + " or " + things[-1] if len(things) > 1 else things[0])


def _is_oom(e):
    """Whether an error is running out of memory: MemoryError, or TensorFlow's
    ResourceExhaustedError (an allocation that failed: "OOM when allocating ...")."""
    return isinstance(e, MemoryError) or type(e).__name__ == "ResourceExhaustedError"


def _is_enospc(e):
    """Whether an error is a full disk: an OSError with errno ENOSPC, or an error from
    TensorFlow or h5py whose text says so."""
    if isinstance(e, KeyboardInterrupt):
        return False
    if isinstance(e, ValueError) and not isinstance(e, OSError):
        return False  # our own messages (settings, data, state) are shown as they are
    text = str(e)
    return getattr(e, "errno", None) == errno.ENOSPC or "No space left" in text \
        or "errno = 28" in text or "ENOSPC" in text


HELP = ("-?", "-h", "--help", "--helpshort", "--helpfull", "--helpxml")


def run(main):
    """absl's app.run(main) with one-line flag errors and `errors()` around main."""
    from absl import app, flags

    def parse(argv):
        try:
            rest = flags.FLAGS(argv)
        except flags.Error as e:
            fail(f"error: {e} (see --help)")
        except UnicodeDecodeError as e:  # absl reads --flagfile as UTF-8 text
            files = [a.split("=", 1)[1] for a in argv[1:] if a.startswith("--flagfile=")]
            fail(f"error: --flagfile={','.join(files) or '?'} is not UTF-8 text (byte "
                 f"{e.object[e.start:e.start + 1]!r} at {e.start}); save it as UTF-8 (see --help)")
        except BrokenPipeError:  # --help | head
            os._exit(0)
        except OSError as e:  # a flagfile that cannot be read
            fail(one_line(e))
        except SystemExit:  # absl's --help/--helpshort/--helpfull print, then exit 1
            if any(a.split("=")[0] in HELP for a in argv[1:]):
                sys.stdout.flush()
                os._exit(0)
            raise
        if len(rest) > 1:
            fail(f"error: unexpected arguments {rest[1:]}: this command takes flags only "
                 "(see --help)")
        for name, value in _non_finite(flags.FLAGS):
            fail(f"error: --{name}={value}: not a finite number (see --help)")
        return rest

    def guarded(argv):
        with errors():
            return main(argv)

    app.run(guarded, flags_parser=parse)


def _non_finite(values):
    """(name, value) of each float flag set to NaN or an infinity (absl's bounds let NaN
    through, and no flag of ours means anything by them)."""
    for name in values:
        value = values[name].value
        for v in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(v, float) and not math.isfinite(v):
                yield name, v
                break


def run_with_flags(fn):
    """`run` for an entry point that is flags plus one call: fn(**flags), each of fn's
    parameters that names a flag read from it (the others keep their defaults).  Extra
    command-line arguments are one line."""
    import inspect

    from absl import flags

    def main(argv):
        if len(argv) > 1:
            fail(f"error: unexpected arguments {argv[1:]}")
        F = flags.FLAGS
        fn(**{name: F[name].value for name in inspect.signature(fn).parameters if name in F})

    run(main)

