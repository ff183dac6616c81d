"""File output: atomic writes, up-front writability checks, strict JSON and a folder lock.

Every file is written to a temporary sibling and renamed, so nothing on disk is damaged by a
failure; a failure also removes the temporary file and any parent folder the write created.
Operating-system failures (a folder where a file is meant, no permission, a read-only or full
disk) become one-line ``OutputError``\\ s that name the path and the fix. ``check_output_file``
and ``check_output_dir`` find the same problems before long work starts.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mtlexport.errors import OutputError

TMP_SUFFIX = ".tmp"
STAGING_SUFFIX = ".staging"

# errno -> what went wrong and what to do about it.
_FIXES: dict[int, str] = {
    errno.EACCES: "permission denied; make the folder writable or choose another path",
    errno.EPERM: "permission denied; make the folder writable or choose another path",
    errno.EROFS: "the file system is read-only; choose a path on a writable disk",
    errno.ENOSPC: "no space left on the device; free some space or choose another disk",
    errno.EDQUOT: "the disk quota is exceeded; free some space or choose another disk",
    errno.EISDIR: "it is a folder; give a file path",
    errno.ENOTDIR: "a part of the path is a file, not a folder; choose another path",
    errno.EEXIST: "a file is in the way of a folder; choose another path",
    errno.ENAMETOOLONG: "the name is too long; choose a shorter path",
    errno.EFBIG: "the file is too large for this file system; choose another disk",
}


def output_error(exc: OSError, path: str | Path) -> OutputError:
    """The one-line ``OutputError`` for an OS failure while writing ``path``."""
    fix = _FIXES.get(exc.errno or -1) or f"{exc.strerror or type(exc).__name__}; choose another path"
    return OutputError(f"cannot write {path}: {fix}")


def describe_os_error(exc: OSError) -> str:
    """``<path>: <what went wrong and the fix>`` for an OSError no stage turned into an OutputError."""
    fix = _FIXES.get(exc.errno or -1) or exc.strerror or type(exc).__name__
    return f"{exc.filename}: {fix}" if exc.filename else fix


def _is_write_failure(exc: BaseException, paths: tuple[Path, ...]) -> bool:
    """True for an OSError about ``paths`` (or about no file at all) with a known errno, and for
    torch's serializer failing to write (a full disk surfaces as "enforce fail at inline_container")."""
    if isinstance(exc, OSError):
        if exc.errno not in _FIXES:
            return False
        return exc.filename is None or any(Path(exc.filename) == p for p in paths)
    return isinstance(exc, RuntimeError) and ("inline_container" in str(exc) or "PytorchStreamWriter" in str(exc))


def _write_failure(exc: BaseException, target: Path) -> OutputError:
    if isinstance(exc, OSError):
        return output_error(exc, target)
    free = _free_bytes(target.parent)
    if free is not None and free < 1 << 20:
        return output_error(OSError(errno.ENOSPC, "no space"), target)
    return OutputError(f"cannot write {target}: the write failed part-way (is the disk full?); "
                       "free some space or choose another path")


def _free_bytes(folder: Path) -> int | None:
    try:
        return shutil.disk_usage(_existing_ancestor(folder)).free
    except OSError:
        return None


def _existing_ancestor(path: Path) -> Path:
    p = path.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _make_parents(folder: Path, target: Path) -> list[Path]:
    """Create ``folder`` and missing parents; return the folders created (deepest last)."""
    missing = []
    p = folder.absolute()
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    if p.exists() and not p.is_dir():
        raise output_error(OSError(errno.ENOTDIR, "not a folder", str(p)), target)
    created: list[Path] = []
    try:
        for d in reversed(missing):
            d.mkdir()
            created.append(d)
    except OSError as exc:
        _remove_dirs(created)
        raise output_error(exc, target) from None
    return created


def _remove_dirs(created: list[Path]) -> None:
    for d in reversed(created):
        with contextlib.suppress(OSError):
            d.rmdir()


def _probe(folder: Path, target: Path) -> None:
    """Create, write and delete a small file in ``folder``: the real test (root ignores mode bits,
    and only a write finds a read-only or full disk)."""
    try:
        fd, name = tempfile.mkstemp(prefix=".mtlexport-probe.", suffix=TMP_SUFFIX, dir=folder)
    except OSError as exc:
        raise output_error(exc, target) from None
    try:
        os.write(fd, b"\0" * 4096)
        os.fsync(fd)
    except OSError as exc:
        raise output_error(exc, target) from None
    finally:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(name)


def check_output_file(path: str | Path, *, what: str = "--out", overwrite: bool = True,
                      need_bytes: int = 0) -> Path:
    """Check that the file ``path`` can be written (creating nothing that stays): not a folder,
    its folder writable, ``need_bytes`` free, and with ``overwrite`` False not already there."""
    target = Path(path)
    if target.is_dir():
        raise OutputError(f"{what} {target} is a folder; give a file path, e.g. {target / 'out.pt'}")
    if target.exists() and not overwrite:
        raise OutputError(f"{what} {target} already exists; pass --force to replace it or choose another path")
    folder = _existing_ancestor(target.parent)
    if not folder.is_dir():
        raise OutputError(f"cannot write {target}: {folder} is a file, not a folder; choose another path")
    _probe(folder, target)
    _check_space(folder, target, need_bytes)
    return target


def check_output_dir(path: str | Path, *, what: str = "--out", need_bytes: int = 0) -> Path:
    """Check that files can be written in the folder ``path`` (new or existing), creating nothing
    that stays."""
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise OutputError(f"{what} {target} is a file; give a folder (a new or an existing one)")
    folder = _existing_ancestor(target)
    if not folder.is_dir():
        raise OutputError(f"cannot write {target}: {folder} is a file, not a folder; choose another path")
    _probe(folder, target)
    _check_space(folder, target, need_bytes)
    return target


def _check_space(folder: Path, target: Path, need_bytes: int) -> None:
    free = _free_bytes(folder) if need_bytes > 0 else None
    if free is not None and free < need_bytes:
        raise OutputError(f"cannot write {target}: it needs about {_mb(need_bytes)} but {folder} has "
                          f"{_mb(free)} free; free some space or choose another disk")


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it over ``path``, else delete it
    (and the parent folders it created). Write failures raise ``OutputError``."""
    target = Path(path)
    if target.is_dir():
        raise OutputError(f"cannot write {target}: it is a folder; give a file path")
    created = _make_parents(target.parent, target)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=TMP_SUFFIX, dir=target.parent)
    except OSError as exc:
        _remove_dirs(created)
        raise output_error(exc, target) from None
    os.close(fd)
    tmp_path = Path(tmp)
    done = False
    failure: OutputError | None = None
    try:
        try:
            yield tmp_path
            # mkstemp creates 0600 files; give the result the mode a plain open() would.
            os.chmod(tmp_path, 0o666 & ~_umask())
            os.replace(tmp_path, target)
            done = True
        except (OSError, RuntimeError) as exc:
            if not _is_write_failure(exc, (tmp_path, target)):
                raise
            failure = _write_failure(exc, target)
        # Raised outside the handler, unchained, after a collection: torch's writer sits in a
        # reference cycle of the failed frames and holds the half-written file (and its disk
        # space) open until it is collected.
        if failure is not None:
            gc.collect()
            raise failure
    finally:
        if tmp_path.exists():
            with contextlib.suppress(OSError):
                tmp_path.unlink()
        if not done:
            _remove_dirs(created)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | Path, text: str) -> Path:
    """Atomically write ``text`` to ``path``."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Atomically write ``data`` to ``path``."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_json(path: str | Path, payload: Any) -> Path:
    """Atomically write ``payload`` as indented strict JSON (see ``dumps_json``)."""
    return write_text(path, dumps_json(payload) + "\n")


def append_jsonl(path: str | Path, record: dict[str, Any]) -> None:
    """Append one strict JSON line (a log, not an artifact: appends are not atomic)."""
    target = Path(path)
    try:
        with open(target, "a") as fh:
            fh.write(dumps_json(record, indent=None) + "\n")
    except OSError as exc:
        raise output_error(exc, target) from None


# ----------------------------------------------------------------------------- strict JSON
def json_safe(payload: Any) -> tuple[Any, list[str]]:
    """``payload`` as plain JSON data with NaN and infinities replaced by None, and the key paths
    (``metrics.depth.abs_err``) where that happened. Objects with ``to_dict()`` and paths are
    converted; tuples become lists."""
    found: list[str] = []

    def clean(obj: Any, where: str) -> Any:
        if isinstance(obj, float):
            if math.isfinite(obj):
                return obj
            found.append(where or "(root)")
            return None
        if obj is None or isinstance(obj, (str, int, bool)):
            return obj
        if isinstance(obj, dict):
            return {str(k): clean(v, f"{where}.{k}" if where else str(k)) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [clean(v, f"{where}[{i}]") for i, v in enumerate(obj)]
        if isinstance(obj, Path):
            return str(obj)
        if hasattr(obj, "to_dict"):
            return clean(obj.to_dict(), where)
        if hasattr(obj, "item") and callable(obj.item):  # numpy / torch scalars
            return clean(obj.item(), where)
        raise TypeError(f"not JSON serialisable: {type(obj).__name__} at {where or '(root)'}")

    return clean(payload, ""), found


def dumps_json(payload: Any, indent: int | None = 2) -> str:
    """Strict JSON text (never bare NaN/Infinity): non-finite numbers become null and a mapping
    gains ``"non_finite": [key paths]`` naming them."""
    clean, found = json_safe(payload)
    if found and isinstance(clean, dict):
        clean["non_finite"] = found
    return json.dumps(clean, indent=indent, allow_nan=False)


# ----------------------------------------------------------------------------- folders
@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield an empty staging folder; on success it replaces ``path`` (an old one is swapped out
    only after the new one is complete), on failure it is removed and ``path`` is untouched."""
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise OutputError(f"cannot write the folder {target}: a file of that name is in the way; "
                          "choose another path or delete the file")
    created = _make_parents(target.parent, target)
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=STAGING_SUFFIX, dir=target.parent))
    except OSError as exc:
        _remove_dirs(created)
        raise output_error(exc, target) from None
    done = False
    failure: OutputError | None = None
    try:
        try:
            yield staging
            if target.exists():
                backup = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
                backup.rmdir()
                os.replace(target, backup)
                os.replace(staging, target)
                shutil.rmtree(backup, ignore_errors=True)
            else:
                os.replace(staging, target)
            done = True
        except (OSError, RuntimeError) as exc:
            if _is_write_failure(exc, (staging, target)) or (
                    isinstance(exc, OSError) and exc.filename and str(exc.filename).startswith(str(staging))
                    and exc.errno in _FIXES):
                failure = _write_failure(exc, target)
            else:
                raise
        if failure is not None:
            raise failure
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
        if not done:
            _remove_dirs(created)


def remove_stale_temps(folder: str | Path, names: tuple[str, ...]) -> list[Path]:
    """Delete the temporary files ``atomic_path`` leaves for ``names`` in ``folder`` when a process
    is killed mid-write (``.<name>.*.tmp``); call it only while no other writer is active."""
    removed = []
    root = Path(folder)
    for name in names:
        for p in root.glob(f".{name}.*{TMP_SUFFIX}"):
            with contextlib.suppress(OSError):
                p.unlink()
                removed.append(p)
    return removed


class FolderLock:
    """An exclusive lock on a folder (``<folder>/.lock``, an ``flock`` held while open): a second
    writer is refused with ``OutputError`` naming the holder's pid. The OS drops the lock when the
    process dies, so a killed run never leaves a stale lock; the file is removed on release."""

    NAME = ".lock"

    def __init__(self, folder: str | Path, what: str = "another mtlexport process") -> None:
        self.folder = Path(folder)
        self.path = self.folder / self.NAME
        self.what = what
        self._fd: int | None = None

    def acquire(self) -> FolderLock:
        try:
            import fcntl
        except ImportError:  # no flock (Windows): no locking
            return self
        _make_parents(self.folder, self.path)
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise output_error(exc, self.folder) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise OutputError(f"{self.folder} is in use by {self.what} (pid {holder}); wait for it to "
                                  "finish or choose another --out") from None
            # The holder before us may have removed the file after we opened it: lock the live one.
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
