"""Reading an npz archive that may be damaged or hostile: every array at once, every problem a
one-line error naming the file and the member.

``np.load`` alone lets several kinds of damage through as tracebacks or as misleading text
(random bytes are "pickled data", an empty file is "No data left in file", a header may
declare a terabyte array). Here the archive is opened with zipfile, each member's npy header
is read first, and its declared size is checked against the member's size before numpy
allocates anything. Object arrays are never unpickled.
"""

from __future__ import annotations

import os
import zipfile
import zlib
from pathlib import Path

import numpy as np

# Larger than any archive the project writes (a full MNIST is 55 MB, the largest chip state
# the configuration allows about 600 MB); anything beyond is refused before it is read.
MAX_BYTES = 2 << 30
_ZIP_MAGIC = b"PK\x03\x04"
_NPY_MAGIC = b"\x93NUMPY"


def _describe_head(head: bytes) -> str:
    if not head:
        return "the file is empty"
    if head.startswith(_NPY_MAGIC):
        return "it is a single .npy array, not an npz archive"
    if head.startswith(b"\x1f\x8b"):
        return "it is gzip data, not an npz archive"
    if head.startswith(b"PK"):
        return "it is not a complete zip archive"
    return "no zip header (not an npz archive)"


def read_npz(path: str | Path, error: type[Exception], what: str = "npz file"
             ) -> dict[str, np.ndarray]:
    """All arrays of the npz at `path` by name (without ``.npy``); any problem raises
    `error` with one line that starts with the path."""
    p = Path(path)

    def fail(msg: str):
        return error(f"{p}: {msg}")

    if not os.path.lexists(p):
        raise fail(f"no such {what}")
    if p.is_dir():
        raise fail(f"is a directory, not an {what}")
    if not p.is_file():
        raise fail(f"is not a regular file (an {what} is needed)")
    try:
        with open(p, "rb") as fh:
            head = fh.read(8)
    except OSError as e:
        raise fail(f"cannot read: {e.strerror or e}") from None
    if not head.startswith(_ZIP_MAGIC):
        raise fail(f"not a readable {what}: {_describe_head(head)}")
    arrays: dict[str, np.ndarray] = {}
    try:
        with zipfile.ZipFile(p) as zf:
            infos = zf.infolist()
            total = sum(i.file_size for i in infos)
            if total > MAX_BYTES:
                raise fail(f"declares {total:,} bytes of arrays, more than the {MAX_BYTES:,} "
                           f"this reader accepts")
            for info in infos:
                name = info.filename
                if not name.endswith(".npy") or info.is_dir():
                    raise fail(f"member {name!r} is not an .npy array")
                key = name[:-4]
                if key in arrays:
                    raise fail(f"member {name!r} appears twice")
                arrays[key] = _read_member(zf, info, fail)
    except error:
        raise
    except zipfile.BadZipFile as e:
        raise fail(f"truncated or corrupt {what}: {e}") from None
    except (OSError, EOFError, zlib.error, ValueError, KeyError, RuntimeError,
            NotImplementedError, MemoryError, UnicodeDecodeError) as e:
        raise fail(f"truncated or corrupt {what}: {type(e).__name__}: {e}") from None
    return arrays


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, fail) -> np.ndarray:
    fmt = np.lib.format
    name = info.filename
    with zf.open(info) as f:
        try:
            version = fmt.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = fmt.read_array_header_1_0(f)
            elif version in ((2, 0), (3, 0)):
                shape, fortran, dtype = fmt.read_array_header_2_0(f)
            else:
                raise ValueError(f"npy format version {version}")
        except (ValueError, EOFError) as e:
            raise fail(f"member {name!r} is not a valid .npy array: {e}") from None
        header_end = f.tell()
    if dtype.hasobject:
        raise fail(f"member {name!r} holds a pickled object array; such arrays are never "
                   f"unpickled")
    need = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if need != info.file_size - header_end:
        raise fail(f"member {name!r} declares shape {list(shape)} of {dtype} ({need:,} bytes) "
                   f"but holds {info.file_size - header_end:,} bytes (truncated or corrupt)")
    with zf.open(info) as f:
        return fmt.read_array(f, allow_pickle=False)
