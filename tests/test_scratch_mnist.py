"""dlnotes.scratch.mnist: the IDX parser on tiny files written here byte by byte."""

from __future__ import annotations

import array
import gzip
import struct
from pathlib import Path

import pytest

from dlnotes.data import REGISTRY, data_dir
from dlnotes.errors import DataError, InputError
from dlnotes.scratch import mnist


def idx_bytes(code: int, dims: tuple[int, ...], fmt: str, values: list) -> bytes:
    """An IDX file: magic (0, 0, type, ndim), big-endian uint32 sizes, big-endian values."""
    header = bytes([0, 0, code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims)
    return header + struct.pack(f">{len(values)}{fmt}", *values)


def write(tmp_path: Path, name: str, payload: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(payload)
    return path


@pytest.mark.parametrize(
    ("code", "fmt", "values"),
    [
        (0x08, "B", [0, 1, 127, 128, 200, 255]),
        (0x09, "b", [-128, -1, 0, 1, 5, 127]),
        (0x0B, "h", [-32768, -2, 0, 3, 300, 32767]),
        (0x0C, "i", [-(2**31), -70000, 0, 1, 70000, 2**31 - 1]),
        (0x0D, "f", [-1.5, 0.0, 0.25, 3.0, 1e10, -2.0]),
        (0x0E, "d", [-1e300, 0.1, 0.2, 1.0 / 3.0, 5.0, 7.0]),
    ],
)
@pytest.mark.parametrize("compressed", [False, True], ids=["raw", "gz"])
def test_reads_every_type_code_big_endian(
    tmp_path: Path, code: int, fmt: str, values: list, compressed: bool
) -> None:
    payload = idx_bytes(code, (2, 3), fmt, values)
    path = write(tmp_path, "x.idx", gzip.compress(payload) if compressed else payload)
    idx = mnist.read_idx(path)
    assert idx.shape == (2, 3) and len(idx) == 2
    assert idx.tolist() == [values[:3], values[3:]]
    assert idx.rows() == [values[:3], values[3:]]


def test_images_and_labels_shapes(tmp_path: Path) -> None:
    pixels = list(range(2 * 3 * 4))
    images = mnist.read_idx(write(tmp_path, "i", idx_bytes(8, (2, 3, 4), "B", pixels)))
    labels = mnist.read_idx(write(tmp_path, "l", idx_bytes(8, (2,), "B", [7, 1])))
    assert images.tolist()[1][2] == [20, 21, 22, 23]
    assert images.rows()[1] == pixels[12:]
    assert labels.tolist() == [7, 1]
    assert mnist.to_vectors(images, mean=0.0, scale=2.0)[0][:3] == [0.0, 0.5, 1.0]


@pytest.mark.parametrize(
    ("payload", "says"),
    [
        (bytes([8, 3, 0, 1]) + b"\x00" * 8, "magic number 08030001"),  # the first 2 bytes != 0
        (bytes([0, 0, 0x07, 1, 0, 0, 0, 1, 5]), "type code"),  # no type 0x07
        (b"\x00\x00", "magic number 0000"),
        (b"", "magic number missing"),
        (bytes([0, 0, 8, 3, 0, 0, 0, 2]), "the header alone needs 16"),
        (
            idx_bytes(8, (2, 3), "B", [1, 2, 3, 4, 5, 6])[:-1],
            "truncated: 17 bytes, but a 2x3 array of 1-byte values needs 18",
        ),
        (idx_bytes(8, (2, 3), "B", [1, 2, 3, 4, 5, 6]) + b"\x00", "too long"),
        (idx_bytes(0x0C, (2,), "i", [1, 2])[:-2], "of 4-byte values needs 16"),
        (bytes([0, 0, 8, 0]), "a 0-dimensional array of 1-byte values needs 5"),
    ],
    ids=["magic", "type", "short", "empty", "header", "truncated", "long", "int32", "scalar"],
)
def test_malformed_files_are_one_line_data_errors(
    tmp_path: Path, payload: bytes, says: str
) -> None:
    with pytest.raises(DataError, match=says):
        mnist.read_idx(write(tmp_path, "bad.idx", payload))


def test_truncated_gzip_is_a_data_error(tmp_path: Path) -> None:
    packed = gzip.compress(idx_bytes(8, (100,), "B", list(range(100))))
    with pytest.raises(DataError, match="truncated or damaged gzip"):
        mnist.read_idx(write(tmp_path, "cut.gz", packed[: len(packed) // 2]))
    with pytest.raises(DataError, match="cannot read IDX file"):
        mnist.read_idx(tmp_path / "absent.idx")


def test_load_checks_split_and_shapes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = {
        "mnist-test-images": write(tmp_path, "ti", idx_bytes(8, (3, 28, 28), "B", [0] * 3 * 784)),
        "mnist-test-labels": write(tmp_path, "tl", idx_bytes(8, (3,), "B", [1, 2, 3])),
    }
    monkeypatch.setattr(mnist, "fetch", files.__getitem__)
    with pytest.raises(DataError, match=r"\(3, 28, 28\) and labels \(3,\) are not 10,000"):
        mnist.load("test")
    with pytest.raises(InputError, match="unknown MNIST split 'valid'"):
        mnist.load("valid")


def test_to_vectors_shares_256_float_objects() -> None:
    images = mnist.Idx((3, 2, 2), array.array("B", [0, 255, 0, 255] * 3))
    vectors = mnist.to_vectors(images, mean=127.5, scale=255.0)
    assert vectors == [[-0.5, 0.5, -0.5, 0.5]] * 3
    assert len({id(v) for row in vectors for v in row}) == 2
    with pytest.raises(InputError, match="unsigned-byte"):
        mnist.to_vectors(mnist.Idx((1, 1), array.array("d", [0.5])), mean=0.0)


def test_real_mnist_when_it_is_already_downloaded() -> None:
    entries = [REGISTRY[f"mnist-test-{kind}"] for kind in ("images", "labels")]
    if not all((data_dir() / e.path).is_file() for e in entries):
        pytest.skip("MNIST is not in the data folder (the test does not download it)")
    images, labels = mnist.load("test")
    assert images.shape == (10_000, 28, 28) and labels.shape == (10_000,)
    assert labels.tolist()[:5] == [7, 2, 1, 0, 4]  # the well-known first test labels
