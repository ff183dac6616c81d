"""mtlexport.io: every unwritable output is one OutputError naming the path and the fix, and a
failed write leaves nothing behind (no temporary file, no folder it created)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from mtlexport.errors import OutputError
from mtlexport.io import (
    FolderLock,
    atomic_dir,
    atomic_path,
    check_output_dir,
    check_output_file,
    dumps_json,
    remove_stale_temps,
    write_json,
    write_text,
)


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def _one_line(exc: pytest.ExceptionInfo[OutputError], *needles: str) -> str:
    text = str(exc.value)
    assert "\n" not in text and len(text) < 300, text
    for needle in needles:
        assert needle in text, text
    return text


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[callable]:
    """``mount(options)`` mounts a small tmpfs (skips where mounting is not allowed)."""
    mounted: list[Path] = []

    def mount(options: str) -> Path:
        target = tmp_path / f"mnt{len(mounted)}"
        target.mkdir()
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN): {proc.stderr.strip()[:100]}")
        mounted.append(target)
        return target

    yield mount
    for target in mounted:
        subprocess.run(["umount", "-l", str(target)], capture_output=True)


def _fill(folder: Path) -> None:
    """Fill the file system of ``folder`` to the last byte."""
    with open(folder / "filler", "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 4096)
                fh.flush()
        except OSError:
            pass


# ----------------------------------------------------------------------------- folders where files go
def test_a_folder_where_a_file_is_meant(tmp_path: Path) -> None:
    (tmp_path / "out.pt").mkdir()
    with pytest.raises(OutputError) as info:
        check_output_file(tmp_path / "out.pt")
    _one_line(info, "out.pt is a folder", "give a file path")
    with pytest.raises(OutputError) as info:
        write_text(tmp_path / "out.pt", "x")
    _one_line(info, "out.pt", "folder")
    assert _files(tmp_path) == ["out.pt"]


def test_a_file_where_a_folder_is_meant(tmp_path: Path) -> None:
    (tmp_path / "run").write_text("not a folder")
    with pytest.raises(OutputError) as info:
        check_output_dir(tmp_path / "run")
    _one_line(info, "run is a file", "give a folder")
    with pytest.raises(OutputError) as info:
        write_text(tmp_path / "run" / "deeper" / "x.txt", "x")
    _one_line(info, "not a folder")
    with pytest.raises(OutputError) as info:
        with atomic_dir(tmp_path / "run"):
            pass
    _one_line(info, "a file of that name is in the way")
    assert _files(tmp_path) == ["run"]


def test_overwrite_refused_without_force(tmp_path: Path) -> None:
    (tmp_path / "a.pt").write_text("old")
    with pytest.raises(OutputError) as info:
        check_output_file(tmp_path / "a.pt", overwrite=False)
    _one_line(info, "already exists", "--force")
    assert check_output_file(tmp_path / "a.pt") == tmp_path / "a.pt"


def test_a_failed_write_removes_its_temp_and_the_folders_it_made(tmp_path: Path) -> None:
    with pytest.raises(ZeroDivisionError):
        with atomic_path(tmp_path / "new" / "deep" / "x.txt") as tmp:
            tmp.write_text("partial")
            1 / 0  # noqa: B018 - any failure in the body
    assert _files(tmp_path) == []
    with pytest.raises(ZeroDivisionError):
        with atomic_dir(tmp_path / "new" / "folder") as staging:
            (staging / "f").write_text("partial")
            1 / 0  # noqa: B018
    assert _files(tmp_path) == []


def test_not_enough_space_is_found_up_front(tmp_path: Path) -> None:
    free = shutil.disk_usage(tmp_path).free
    with pytest.raises(OutputError) as info:
        check_output_dir(tmp_path / "run", need_bytes=free * 2 + (1 << 40))
    _one_line(info, "needs about", "free", "choose another disk")
    assert _files(tmp_path) == []


# ----------------------------------------------------------------------------- file systems
def test_full_disk(tmpfs) -> None:  # noqa: ANN001
    disk = tmpfs("size=256k")
    # torch's serializer reports a full disk as "enforce fail at inline_container.cc".
    with pytest.raises(OutputError) as info:
        with atomic_path(disk / "big.pt") as tmp:
            torch.save({"w": torch.zeros(200_000)}, tmp)
    _one_line(info, "big.pt", "free some space")
    assert _files(disk) == []
    _fill(disk)
    with pytest.raises(OutputError) as info:
        check_output_file(disk / "x.json")
    _one_line(info, "x.json", "no space left")
    with pytest.raises(OutputError) as info:
        write_json(disk / "x.json", {"a": 1})
    _one_line(info, "x.json", "no space left")
    assert _files(disk) == ["filler"]


def test_read_only_file_system(tmpfs) -> None:  # noqa: ANN001
    disk = tmpfs("size=64k,ro")
    with pytest.raises(OutputError) as info:
        check_output_dir(disk / "run")
    _one_line(info, "run", "read-only")
    with pytest.raises(OutputError) as info:
        write_text(disk / "x.txt", "x")
    _one_line(info, "x.txt", "read-only")


def test_read_only_folder_for_a_non_root_user() -> None:
    """Root ignores permission bits, so the check runs in a child that drops to user nobody
    after importing what it needs."""
    if not hasattr(os, "setuid") or os.geteuid() != 0:
        pytest.skip("needs root to switch to another user (as a plain user the folder test below is the same)")
    base = Path(tempfile.mkdtemp(prefix="mtlexport-ro-"))
    try:
        base.chmod(0o755)
        folder = base / "locked"
        folder.mkdir(mode=0o755)  # owned by root: nobody may not write here
        code = textwrap.dedent(f"""
            import os, sys
            from pathlib import Path
            from mtlexport.errors import OutputError
            from mtlexport.io import check_output_file, write_text
            os.setgid(65534); os.setuid(65534)
            out = []
            for call in (lambda: check_output_file(Path({str(folder)!r}) / "a.pt"),
                         lambda: write_text(Path({str(folder)!r}) / "sub" / "b.txt", "x")):
                try:
                    call()
                    out.append("no error")
                except OutputError as exc:
                    out.append(str(exc))
            print("\\n".join(out))
        """)
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-500:]
        lines = proc.stdout.strip().splitlines()
        assert len(lines) == 2
        for line in lines:
            assert "permission denied" in line and str(folder) in line and len(line) < 300
        assert list(folder.iterdir()) == []
    finally:
        shutil.rmtree(base, ignore_errors=True)


# ----------------------------------------------------------------------------- strict JSON
def test_strict_json_replaces_non_finite_numbers_and_names_them() -> None:
    text = dumps_json({"metrics": {"depth": {"abs_err": float("nan"), "rmse": 1.0}}, "xs": [1.0, float("inf")],
                       "path": Path("a/b"), "n": torch.tensor(2.5)})
    payload = json.loads(text)
    assert "NaN" not in text and "Infinity" not in text
    assert payload["metrics"]["depth"] == {"abs_err": None, "rmse": 1.0} and payload["xs"] == [1.0, None]
    assert payload["non_finite"] == ["metrics.depth.abs_err", "xs[1]"]
    assert payload["path"] == "a/b" and payload["n"] == 2.5
    assert "non_finite" not in json.loads(dumps_json({"a": 1.0}))


# ----------------------------------------------------------------------------- lock and temps
def test_folder_lock_refuses_a_second_holder_and_cleans_up(tmp_path: Path) -> None:
    run = tmp_path / "run"
    with FolderLock(run, "another 'mtlexport train'"):
        assert (run / ".lock").read_text() == str(os.getpid())
        with pytest.raises(OutputError) as info:
            FolderLock(run, "another 'mtlexport train'").acquire()
        _one_line(info, str(run), f"pid {os.getpid()}", "another 'mtlexport train'", "choose another --out")
    assert _files(tmp_path) == ["run"]
    with FolderLock(run):  # free again
        pass


def test_a_killed_holder_leaves_no_stale_lock(tmp_path: Path) -> None:
    code = (f"from mtlexport.io import FolderLock; import os, signal; FolderLock({str(tmp_path)!r}).acquire(); "
            "os.kill(os.getpid(), signal.SIGKILL)")
    subprocess.run([sys.executable, "-c", code], timeout=60)
    assert (tmp_path / ".lock").exists()  # the file stays behind, the lock does not
    with FolderLock(tmp_path):
        pass
    assert not (tmp_path / ".lock").exists()


def test_remove_stale_temps_only_touches_the_named_outputs(tmp_path: Path) -> None:
    for name in (".last.pt.abc123.tmp", ".best.pt.x.tmp", ".other.y.tmp", "last.pt", "notes.tmp"):
        (tmp_path / name).write_text("x")
    removed = remove_stale_temps(tmp_path, ("last.pt", "best.pt"))
    assert sorted(p.name for p in removed) == [".best.pt.x.tmp", ".last.pt.abc123.tmp"]
    assert _files(tmp_path) == [".other.y.tmp", "last.pt", "notes.tmp"]
