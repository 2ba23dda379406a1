"""Safe output: every file the project writes goes through here.

Rules (docs/device.md, section 5, for the chip-state pair):

* a file is written to a temporary file in its target directory, flushed to disk and renamed
  into place, so a reader never sees half a file;
* an existing output is replaced only when the caller allows it (`--force`); an input of the
  same command never, and a file of another kind never (an `--out` naming an MNIST or a
  weights file is a mistake, not a wish);
* an output that cannot be written (read-only directory, a parent that is a file, a target
  that is a directory) is an :class:`OutputError` naming the path and the reason.

A multi-file artifact is committed by :func:`commit`: all temporaries first, then the renames
in the given order; the caller orders them so that the last rename is the one that makes the
new artifact visible (a chip state keeps its old arrays readable until then; see
cim_spec.chipstate).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
import zipfile
from collections.abc import Iterable
from pathlib import Path

from .config import ConfigError

# Kinds of file the project writes or reads, as `kind_of` tells them apart.
MISSING, DIRECTORY, OTHER = "missing", "directory", "other file"
CHIP_MANIFEST, CHIP_ARRAYS = "chip-state manifest", "chip-state arrays"
MODEL, MNIST, NPZ, JSON = "model file", "MNIST data set", "npz archive", "JSON file"


# mkstemp makes private (0600) files; an output gets the mode a plain open() would give it.
_UMASK = os.umask(0o022)
os.umask(_UMASK)


class OutputError(ConfigError):
    """An output path that must not or cannot be written."""


def kind_of(path: Path) -> str:
    """What `path` holds, from its first bytes (never more than a zip directory or a small
    JSON document is read)."""
    p = Path(path)
    if not os.path.lexists(p):
        return MISSING
    if p.is_dir():
        return DIRECTORY
    if not p.is_file():
        return OTHER
    try:
        with open(p, "rb") as fh:
            head = fh.read(4)
        if head == b"PK\x03\x04":
            with zipfile.ZipFile(p) as zf:
                names = set(zf.namelist())
            if "codes.npy" in names:
                return CHIP_ARRAYS
            if {"network.npy", "meta.npy"} <= names:
                return MODEL
            if "x_test.npy" in names or "x_train.npy" in names:
                return MNIST
            return NPZ
        if head in (b"\x00\x00\x08\x03", b"\x00\x00\x08\x01"):
            return MNIST
        if p.stat().st_size <= 64 << 20 and head[:1] in (b"{", b"["):
            doc = json.loads(p.read_text())
            if isinstance(doc, dict) and doc.get("schema") == "cim-chip-state":
                return CHIP_MANIFEST
            return JSON
    except (OSError, ValueError, zipfile.BadZipFile):
        pass
    return OTHER


def _check_parent(path: Path) -> None:
    parent = Path(os.path.abspath(path)).parent
    for anc in [parent, *parent.parents]:
        if os.path.lexists(anc):
            if not anc.is_dir():
                raise OutputError(f"cannot write {path}: {anc} is not a directory")
            if not os.access(anc, os.W_OK | os.X_OK):
                raise OutputError(f"cannot write {path}: directory {anc} is not writable")
            # Permissions do not tell everything (root, read-only mounts, /proc): try it.
            try:
                fd, probe = tempfile.mkstemp(dir=anc, prefix=".cim-probe.")
                os.close(fd)
                os.unlink(probe)
            except OSError as e:
                raise OutputError(f"cannot write {path}: directory {anc}: "
                                  f"{e.strerror or e}") from None
            break


def _a(kind: str) -> str:
    return ("an " if kind[0] in "aeioAEIOM" else "a ") + kind


def _same(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return Path(os.path.abspath(a)) == Path(os.path.abspath(b))


def check_output(path: str | Path, kinds: Iterable[str], force: bool = False,
                 inputs: Iterable[str | Path | None] = ()) -> Path:
    """Refuse to write `path` unless it is new, or (with `force`) an existing file of one of
    `kinds`; never when it is one of `inputs`. Call before the work, so a refusal costs
    nothing."""
    path = Path(path)
    kinds = set(kinds)
    for i in inputs:
        if i is not None and os.path.lexists(i) and _same(path, Path(i)):
            raise OutputError(f"{path} is also an input of this command; write the result "
                              f"elsewhere (--force does not replace an input)")
    kind = kind_of(path)
    if kind == DIRECTORY and DIRECTORY not in kinds:
        raise OutputError(f"cannot write {path}: it is a directory")
    if kind not in (MISSING, DIRECTORY) and DIRECTORY in kinds and len(kinds) == 1:
        raise OutputError(f"cannot write into {path}: it is a file, not a directory")
    if kind not in (MISSING, DIRECTORY):
        if kind not in kinds:
            raise OutputError(f"{path} exists and holds {_a(kind)}, not "
                              f"{' or '.join(_a(k) for k in sorted(kinds))}; refusing to "
                              f"replace it (even with --force)")
        if not force:
            raise OutputError(f"{path} exists; give --force to replace it")
    _check_parent(path if kind != DIRECTORY else path / "x")
    return path


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _mkdir(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise OutputError(f"cannot create directory {directory}: a file is in the way") from None
    except OSError as e:
        raise OutputError(f"cannot create directory {directory}: {e.strerror or e}") from None


def write_temp(path: Path, data: bytes) -> Path:
    """`data` in a new temporary file beside `path`, on disk; returns the temporary's path."""
    _mkdir(path.parent)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), 0o666 & ~_UMASK)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as e:
        os.unlink(tmp)
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from None
    return Path(tmp)


def commit(files: list[tuple[Path, bytes]], steps: list | None = None) -> None:
    """Write several files as one artifact: every temporary first (a failure there leaves the
    old files untouched), then the renames in the order given. `steps` are extra callables
    run between the temporaries and the renames (the chip state keeps a copy of its old
    arrays there)."""
    temps: list[tuple[Path, Path]] = []
    try:
        for path, data in files:
            temps.append((write_temp(Path(path), data), Path(path)))
        for step in steps or ():
            step()
        while temps:
            tmp, path = temps[0]
            try:
                os.replace(tmp, path)
            except IsADirectoryError:
                raise OutputError(f"cannot write {path}: it is a directory") from None
            except OSError as e:
                raise OutputError(f"cannot write {path}: {e.strerror or e}") from None
            temps.pop(0)
    finally:
        for tmp, _ in temps:
            try:
                os.unlink(tmp)
            except OSError:
                pass
    for d in {Path(p).parent for p, _ in files}:
        _fsync_dir(d)


def write_bytes(path: str | Path, data: bytes) -> Path:
    path = Path(path)
    commit([(path, data)])
    return path


def write_text(path: str | Path, text: str) -> Path:
    return write_bytes(path, text.encode())


def write_json(path: str | Path, obj, indent: int | None = 1, sort_keys: bool = False) -> Path:
    return write_text(path, json.dumps(obj, indent=indent, sort_keys=sort_keys) + "\n")


def keep_copy(src: Path, dst: Path) -> None:
    """`dst` becomes a second name (or, where links are not possible, a durable copy) of
    `src`, atomically; nothing happens when `src` does not exist."""
    if not src.is_file():
        return
    # A fresh name each time: a crash may have left an earlier temporary behind.
    tmp = dst.with_name(f"{dst.name}.{secrets.token_hex(6)}.tmp")
    try:
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, dst)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise OutputError(f"cannot keep the old {src} while replacing it: "
                          f"{e.strerror or e}") from None


def remove(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as e:
        raise OutputError(f"cannot remove {path}: {e.strerror or e}") from None
