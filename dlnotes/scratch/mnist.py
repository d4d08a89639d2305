"""MNIST from its IDX files, parsed in pure Python and fetched through `dlnotes.data`.

The format (http://yann.lecun.com/exdb/mnist/, "FILE FORMATS"): two zero bytes, a
type code (0x08 unsigned byte, 0x09 signed byte, 0x0B int16, 0x0C int32, 0x0D
float32, 0x0E float64), the number of dimensions, one big-endian uint32 per
dimension, then the values, big-endian, row-major. The files are served gzipped.

Grus, *Data Science from Scratch* 2e, ch. 19 gets the same arrays from the `mnist`
package via numpy; here `read_idx` keeps them flat in an `array.array` and
`to_vectors` turns images into centred, scaled float vectors. Leaves out writing
IDX files and the other classic data sets (Fashion-MNIST uses the same format and
parses too).
"""

from __future__ import annotations

import array
import gzip
import math
import struct
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

from dlnotes.data import fetch
from dlnotes.errors import DataError, InputError
from dlnotes.scratch.tensor import Tensor

# type code -> (array typecode, bytes per value)
IDX_TYPES = {
    0x08: ("B", 1),
    0x09: ("b", 1),
    0x0B: ("h", 2),
    0x0C: ("i", 4),
    0x0D: ("f", 4),
    0x0E: ("d", 8),
}
SPLITS = {"train": 60_000, "test": 10_000}


@dataclass(frozen=True)
class Idx:
    """An IDX array: its shape and its values, flat and row-major."""

    shape: tuple[int, ...]
    data: array.array

    def __len__(self) -> int:
        return self.shape[0] if self.shape else 0

    def rows(self) -> list[list]:
        """One flat list per entry of the first dimension (e.g. 784 pixels per image)."""
        n = math.prod(self.shape[1:])
        return [self.data[i : i + n].tolist() for i in range(0, len(self.data), n)]

    def tolist(self) -> Tensor:
        """Nested lists of the full shape, as numpy's ``tolist``."""
        nested = self.data.tolist()
        for size in reversed(self.shape[1:]):
            nested = [nested[i : i + size] for i in range(0, len(nested), size)]
        return nested


def read_idx(path: str | Path) -> Idx:
    """Parse an IDX file (gzipped or not); a malformed one is a `DataError` saying how.

    >>> import tempfile, os
    >>> fd, name = tempfile.mkstemp(); _ = os.write(fd, bytes([0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3,
    ...                                                      1, 2, 3, 4, 5, 6])); os.close(fd)
    >>> read_idx(name).tolist()
    [[1, 2, 3], [4, 5, 6]]
    >>> os.remove(name)
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":  # gzip's magic number
            raw = gzip.decompress(raw)
    except OSError as exc:  # includes gzip.BadGzipFile
        raise DataError(f"cannot read IDX file {path}: {exc}") from None
    except (EOFError, zlib.error) as exc:
        raise DataError(f"{path} is a truncated or damaged gzip file ({exc})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_TYPES:
        raise DataError(
            f"{path} is not an IDX file: magic number {raw[:4].hex() or 'missing'}, "
            f"expected 0000 then a type code in {sorted(hex(t) for t in IDX_TYPES)} "
            "and the number of dimensions"
        )
    typecode, size = IDX_TYPES[raw[2]]
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path} is truncated: {len(raw)} bytes, the header alone needs {header}")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected = header + math.prod(dims) * size
    if len(raw) != expected:
        what = "truncated" if len(raw) < expected else "too long"
        raise DataError(
            f"{path} is {what}: {len(raw):,} bytes, but a "
            f"{'x'.join(map(str, dims)) or '0-dimensional'} array "
            f"of {size}-byte values needs {expected:,}"
        )
    data = array.array(typecode, raw[header:])
    if size > 1 and sys.byteorder == "little":
        data.byteswap()  # IDX values are big-endian
    return Idx(tuple(dims), data)


def load(split: str = "train") -> tuple[Idx, Idx]:
    """(images, labels) of MNIST's ``train`` (60,000) or ``test`` (10,000) split."""
    if split not in SPLITS:
        raise InputError(f"unknown MNIST split {split!r}; use 'train' or 'test'")
    images = read_idx(fetch(f"mnist-{split}-images"))
    labels = read_idx(fetch(f"mnist-{split}-labels"))
    n = SPLITS[split]
    if images.shape != (n, 28, 28) or labels.shape != (n,):
        raise DataError(
            f"MNIST {split}: images {images.shape} and labels {labels.shape} are not "
            f"{n:,} 28x28 images with one label each"
        )
    return images, labels


def to_vectors(images: Idx, mean: float, scale: float = 256.0) -> list[list[float]]:
    """Flatten byte images into vectors of (pixel - mean) / scale.

    Every pixel is one of 256 values, so the vectors share 256 float objects from a
    table instead of holding 47 million separate ones (about 1.1 GB for MNIST).

    >>> to_vectors(Idx((1, 2, 2), array.array("B", [0, 128, 255, 0])), mean=128.0)
    [[-0.5, 0.0, 0.49609375, -0.5]]
    """
    if images.data.typecode != "B":
        raise InputError(f"to_vectors needs unsigned-byte images, got type {images.data.typecode}")
    table = [(v - mean) / scale for v in range(256)]
    return [[table[p] for p in row] for row in images.rows()]
