"""Files a run writes are replaced whole: written beside the target, then renamed, so an
interrupted or failed run never leaves half a file (a checkpoint, a fit, a plot).

`write_atomic` is the one routine every output goes through (JSON, NPZ, NetCDF, PNG, SVG,
checkpoints, generated code). A temporary is named `.NAME.bgmc-PID-XXXXXXXX.tmp` beside
the target NAME and created with mode 0666 less the umask, the mode the final file keeps.
A run killed while writing (SIGKILL) leaves its temporary; the next write to the same
target removes such leftovers whose writer is gone or which are older than
STALE_SECONDS. A symlink target is written through: the file it points to is replaced,
the link stays. A write that fails (no space, the file-size limit, permissions) raises
OutputError naming the file, and leaves the previous file and no temporary.

`check_output` is the same file's check before the work: a command calls it for each
output it will write, so a fit is not run for 40 s only to find it cannot be saved.
This module is light (it does not import torch): the compiler writes with it.
"""
from __future__ import annotations

import errno
import os
import re
import secrets
import time
from pathlib import Path

from runtime.errors import BgmRuntimeError

STALE_SECONDS = 600  # a temporary this old is a leftover even if its pid is in use again


class OutputError(BgmRuntimeError):
    """An output file that cannot be written; the message names it and says why."""


def write_atomic(path: str | Path, content: str | bytes | bytearray | memoryview) -> None:
    """Write to a temporary file beside the target, then rename: readers never see half."""
    if not isinstance(content, (str, bytes, bytearray, memoryview)):
        raise TypeError(f"write_atomic writes str or bytes, not {type(content).__name__}")
    data = content.encode() if isinstance(content, str) else content
    target = Path(os.path.realpath(path))  # through a symlink: replace its target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(_cannot_write(path, exc)) from None
    remove_stale_temporaries(target)
    tmp = _temporary(target)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0),
                     0o666)  # the umask applies, as for any new file
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        _unlink(tmp)
        raise OutputError(_cannot_write(path, exc)) from None
    except BaseException:
        _unlink(tmp)
        raise


def check_output(path: str, flag: str) -> None:
    """Refuse, before any work, an output `path` (given by `flag`) that could not be
    written: an empty name, a directory, something other than a regular file (a device, a
    FIFO), or a place where no file can be created. Missing parent directories are
    fine when they can be created (write_atomic creates them)."""
    if not path:
        raise OutputError(f"{flag}: the file name is empty")
    shown = f"{flag} '{path}'"
    if path.endswith(("/", os.sep)):
        raise OutputError(f"{shown} names a directory; give a file name")
    real = os.path.realpath(path)
    if os.path.isdir(real):
        raise OutputError(f"{shown} is a directory; give a file name")
    if os.path.lexists(real) and not os.path.isfile(real):
        raise OutputError(f"{shown} exists and is not a regular file; give a file name")
    parent = os.path.dirname(real)
    existing = parent
    while not os.path.lexists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise OutputError(f"{shown}: '{existing}' is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        what = "write in the directory" if existing == parent else \
            f"create the directory '{parent}' in"
        raise OutputError(f"{shown}: cannot {what} '{existing}' (permission denied or a "
                          "read-only file system)")


def remove_stale_temporaries(target: Path) -> None:
    """Remove leftovers of interrupted writes to `target`: temporaries of this module's
    naming whose writing process is gone, or which are older than STALE_SECONDS."""
    prefix = f".{target.name}.bgmc-"
    pattern = re.compile(r"(\d+)-[0-9a-f]{8}\.tmp")
    try:
        names = [n for n in os.listdir(target.parent) if n.startswith(prefix)]
    except OSError:
        return
    now = time.time()
    for name in names:
        match = pattern.fullmatch(name[len(prefix):])
        if match is None:
            continue
        tmp = target.parent / name
        try:
            age = now - tmp.lstat().st_mtime
        except OSError:
            continue
        pid = int(match.group(1))
        if age > STALE_SECONDS or (pid != os.getpid() and not _alive(pid)):
            _unlink(tmp)


def _temporary(target: Path) -> Path:
    return target.with_name(f".{target.name}.bgmc-{os.getpid()}-{secrets.token_hex(4)}.tmp")


def _alive(pid: int) -> bool:
    if pid <= 0:  # not a process's id (0 would ask about our own group)
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError, ValueError):
        return True  # exists (another user's), or not a pid we can ask about: keep it
    return True


def _unlink(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


def _cannot_write(path: str | Path, exc: OSError) -> str:
    reason = exc.strerror or str(exc)
    if exc.errno == errno.EFBIG:
        reason += " (the file-size limit, ulimit -f)"
    return f"cannot write '{path}': {reason}"
