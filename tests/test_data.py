"""Tests for dtrain.data.idx and dtrain.data.mnist: the shipped MNIST, synthetic IDX
datasets written to tmp dirs, every refusal path, the checksum check, and property
tests that no input makes the readers raise anything but IdxError."""

from __future__ import annotations

import gzip
import hashlib
import shutil
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dtrain.data.idx import (
    IMAGES_MAGIC,
    LABELS_MAGIC,
    IdxError,
    display_path,
    parse_idx,
    read_bytes,
)
from dtrain.data.mnist import FILES, SHIPPED_DIR, Dataset, load_dataset
from dtrain.errors import UserError

# The loader's own table of the four files: their names and magic numbers.
STEMS = tuple(stem for stem, _ in FILES.values())
TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS = STEMS
MAGIC_OF = dict(FILES.values())

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


# --------------------------------------------------------------------------- helpers


def idx_bytes(magic: int, dims: tuple[int, ...], data: bytes = b"") -> bytes:
    """An IDX file: big-endian uint32 magic, one big-endian uint32 per dimension, then data."""
    return struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in dims) + data


def images_bytes(images: np.ndarray) -> bytes:
    assert images.ndim == 3
    return idx_bytes(IMAGES_MAGIC, images.shape, images.astype(np.uint8).tobytes())


def labels_bytes(labels: np.ndarray) -> bytes:
    assert labels.ndim == 1
    return idx_bytes(LABELS_MAGIC, labels.shape, labels.astype(np.uint8).tobytes())


def write_file(directory: Path, stem: str, content: bytes, gz: bool) -> Path:
    """Write `content` as `stem` (raw) or `stem.gz` (gzipped); return the path written."""
    path = directory / (f"{stem}.gz" if gz else stem)
    path.write_bytes(gzip.compress(content, compresslevel=1) if gz else content)
    return path


def make_arrays(n_train=12, n_test=7, rows=8, cols=8, seed=0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        TRAIN_IMAGES: rng.integers(0, 256, size=(n_train, rows, cols), dtype=np.uint8),
        TRAIN_LABELS: rng.integers(0, 10, size=n_train, dtype=np.uint8),
        TEST_IMAGES: rng.integers(0, 256, size=(n_test, rows, cols), dtype=np.uint8),
        TEST_LABELS: rng.integers(0, 10, size=n_test, dtype=np.uint8),
    }


def encode(stem: str, array: np.ndarray) -> bytes:
    return images_bytes(array) if MAGIC_OF[stem] == IMAGES_MAGIC else labels_bytes(array)


def make_dataset(directory: Path, arrays: dict[str, np.ndarray] | None = None, gz=True) -> dict[str, Path]:
    """Write a valid dataset of four IDX files; `gz` is a bool or a {stem: bool} map."""
    directory.mkdir(parents=True, exist_ok=True)
    arrays = arrays if arrays is not None else make_arrays()
    paths = {}
    for stem in STEMS:
        zipped = gz[stem] if isinstance(gz, dict) else gz
        paths[stem] = write_file(directory, stem, encode(stem, arrays[stem]), zipped)
    return paths


def replace_file(paths: dict[str, Path], stem: str, content: bytes, gz: bool | None = None) -> Path:
    """Replace one file of a dataset with `content` (gzipped if the file was, unless `gz` says)."""
    old = paths[stem]
    zipped = old.suffix == ".gz" if gz is None else gz
    old.unlink()
    paths[stem] = write_file(old.parent, stem, content, zipped)
    return paths[stem]


def assert_idx_error(excinfo: pytest.ExceptionInfo, where: Path, *phrases: str) -> str:
    """The error is an IdxError, one line, starting with `where` as shown, and says each phrase."""
    assert excinfo.type is IdxError
    msg = str(excinfo.value)
    assert "\n" not in msg and "\r" not in msg, msg
    assert msg.startswith(display_path(where) + ": "), msg
    for phrase in phrases:
        assert phrase in msg, f"{phrase!r} not in {msg!r}"
    return msg


def sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def read_sums(path: Path) -> dict[str, str]:
    table = {}
    for line in path.read_text().splitlines():
        digest, name = line.split()
        table[name] = digest
    return table


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def mnist() -> Dataset:
    return load_dataset()


@pytest.fixture(scope="module")
def shipped_files() -> dict[str, tuple[bytes, bytes]]:
    """{stem: (gz bytes, decompressed bytes)} for the four shipped files."""
    out = {}
    for stem in STEMS:
        gz = (SHIPPED_DIR / f"{stem}.gz").read_bytes()
        out[stem] = (gz, gzip.decompress(gz))
    return out


@pytest.fixture
def dataset(tmp_path) -> tuple[Path, dict[str, Path], dict[str, np.ndarray]]:
    directory = tmp_path / "synth"
    arrays = make_arrays()
    paths = make_dataset(directory, arrays)
    return directory, paths, arrays


# --------------------------------------------------------------------------- 1. shipped MNIST


def test_error_type_is_user_error():
    assert issubclass(IdxError, UserError)


def test_shipped_mnist_loads(mnist):
    assert isinstance(mnist, Dataset)
    assert mnist.name == "mnist"
    assert mnist.x_train.shape == (60000, 784)
    assert mnist.x_test.shape == (10000, 784)
    assert mnist.y_train.shape == (60000,)
    assert mnist.y_test.shape == (10000,)
    for a in (mnist.x_train, mnist.y_train, mnist.x_test, mnist.y_test):
        assert a.dtype == np.uint8
    assert mnist.image_shape == (28, 28)
    assert mnist.n_features == 784
    assert np.bincount(mnist.y_train, minlength=10).tolist() == MNIST_TRAIN_COUNTS
    assert np.bincount(mnist.y_test, minlength=10).tolist() == MNIST_TEST_COUNTS
    # Real images: not all blank, full pixel range used, corners empty.
    assert mnist.x_train.max() == 255 and mnist.x_train.min() == 0
    assert mnist.x_train.reshape(-1, 28, 28)[:, 0, 0].max() == 0


def test_shipped_mnist_matches_raw_files(mnist, shipped_files):
    """The loaded arrays are exactly the bytes after the 16/8-byte headers, row-major."""
    raw_images = shipped_files[TEST_IMAGES][1]
    raw_labels = shipped_files[TEST_LABELS][1]
    assert raw_images[:16] == idx_bytes(IMAGES_MAGIC, (10000, 28, 28))
    assert raw_labels[:8] == idx_bytes(LABELS_MAGIC, (10000,))
    assert mnist.x_test.tobytes() == raw_images[16:]
    assert mnist.y_test.tobytes() == raw_labels[8:]
    assert mnist.y_train[:10].tolist() == list(shipped_files[TRAIN_LABELS][1][8:18])


# --------------------------------------------------------------------------- 2. synthetic datasets load


@pytest.mark.parametrize(
    "gz",
    [
        True,
        False,
        {TRAIN_IMAGES: True, TRAIN_LABELS: False, TEST_IMAGES: False, TEST_LABELS: True},
        {TRAIN_IMAGES: False, TRAIN_LABELS: True, TEST_IMAGES: True, TEST_LABELS: False},
    ],
    ids=["gzipped", "raw", "mixed1", "mixed2"],
)
def test_synthetic_dataset_loads(tmp_path, gz):
    directory = tmp_path / "tiny-set"
    arrays = make_arrays(n_train=12, n_test=7, rows=8, cols=8, seed=1)
    make_dataset(directory, arrays, gz=gz)
    ds = load_dataset(directory)
    assert ds.name == "tiny-set"
    assert ds.image_shape == (8, 8)
    assert ds.n_features == 64
    assert ds.x_train.shape == (12, 64) and ds.x_test.shape == (7, 64)
    for a in (ds.x_train, ds.y_train, ds.x_test, ds.y_test):
        assert a.dtype == np.uint8
    np.testing.assert_array_equal(ds.x_train, arrays[TRAIN_IMAGES].reshape(12, 64))
    np.testing.assert_array_equal(ds.y_train, arrays[TRAIN_LABELS])
    np.testing.assert_array_equal(ds.x_test, arrays[TEST_IMAGES].reshape(7, 64))
    np.testing.assert_array_equal(ds.y_test, arrays[TEST_LABELS])


def test_non_square_images_flatten_row_major(tmp_path):
    arrays = make_arrays(n_train=3, n_test=2, rows=5, cols=3, seed=2)
    make_dataset(tmp_path / "d", arrays, gz=False)
    ds = load_dataset(str(tmp_path / "d"))  # a str works as well as a Path
    assert ds.image_shape == (5, 3)
    assert ds.n_features == 15
    for i in range(3):
        assert ds.x_train[i].tolist() == arrays[TRAIN_IMAGES][i].ravel().tolist()
        np.testing.assert_array_equal(ds.x_train[i].reshape(5, 3), arrays[TRAIN_IMAGES][i])


def test_single_image_and_all_label_values(tmp_path):
    arrays = {
        TRAIN_IMAGES: np.arange(10 * 2 * 2, dtype=np.uint8).reshape(10, 2, 2),
        TRAIN_LABELS: np.arange(10, dtype=np.uint8),
        TEST_IMAGES: np.full((1, 2, 2), 255, dtype=np.uint8),
        TEST_LABELS: np.array([9], dtype=np.uint8),
    }
    make_dataset(tmp_path / "d", arrays)
    ds = load_dataset(tmp_path / "d")
    assert ds.y_train.tolist() == list(range(10))
    assert ds.x_test.tolist() == [[255, 255, 255, 255]]


def test_raw_name_holding_gzip_data_is_decompressed(tmp_path):
    """A file without .gz whose content is gzip is recognised by its magic bytes."""
    directory = tmp_path / "d"
    arrays = make_arrays(seed=3)
    paths = make_dataset(directory, arrays, gz=False)
    paths[TRAIN_IMAGES].write_bytes(gzip.compress(images_bytes(arrays[TRAIN_IMAGES])))
    ds = load_dataset(directory)
    np.testing.assert_array_equal(ds.x_train, arrays[TRAIN_IMAGES].reshape(len(ds.x_train), -1))


def test_gz_file_preferred_over_raw_file(dataset):
    directory, paths, arrays = dataset
    (directory / TRAIN_IMAGES).write_bytes(b"not an idx file")  # ignored: the .gz is found first
    ds = load_dataset(directory)
    np.testing.assert_array_equal(ds.y_train, arrays[TRAIN_LABELS])


def test_parse_idx_direct():
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    out = parse_idx(images_bytes(images), Path("x"), IMAGES_MAGIC)
    assert out.dtype == np.uint8 and out.shape == (2, 3, 4)
    np.testing.assert_array_equal(out, images)
    labels = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    np.testing.assert_array_equal(parse_idx(labels_bytes(labels), Path("y"), LABELS_MAGIC), labels)


def test_valid_checksums_are_accepted(dataset):
    """A SHA256SUMS with correct entries (either case, `*` binary marker, .gz lines too) passes."""
    directory, paths, arrays = dataset
    lines = []
    for stem in STEMS:
        raw = encode(stem, arrays[stem])
        lines.append(f"{sha256(raw).upper()} *{stem}")
        lines.append(f"{sha256(paths[stem].read_bytes())}  {stem}.gz")
    (directory / "SHA256SUMS").write_text("\n".join(lines) + "\n")
    ds = load_dataset(directory)
    np.testing.assert_array_equal(ds.y_test, arrays[TEST_LABELS])


# --------------------------------------------------------------------------- 3. refusals


def test_missing_directory(tmp_path):
    missing = tmp_path / "no-such-dir"
    with pytest.raises(IdxError) as ei:
        load_dataset(missing)
    assert_idx_error(ei, missing, "no such directory")


def test_directory_that_is_a_file(tmp_path):
    f = tmp_path / "afile"
    f.write_bytes(b"")
    with pytest.raises(IdxError) as ei:
        load_dataset(f)
    assert_idx_error(ei, f, "no such directory")


def test_empty_directory(tmp_path):
    with pytest.raises(IdxError) as ei:
        load_dataset(tmp_path)
    assert_idx_error(ei, tmp_path, "missing", TRAIN_IMAGES)


@pytest.mark.parametrize("stem", STEMS)
def test_missing_one_file(dataset, stem):
    directory, paths, _ = dataset
    paths[stem].unlink()
    with pytest.raises(IdxError) as ei:
        load_dataset(directory)
    msg = assert_idx_error(ei, directory, f"missing {stem}.gz", stem)
    for other in STEMS:
        if other != stem:
            assert other not in msg


@pytest.mark.parametrize("stem", STEMS)
@pytest.mark.parametrize("gz", [True, False], ids=["gz", "raw"])
def test_bad_magic_number(tmp_path, stem, gz):
    directory = tmp_path / "d"
    arrays = make_arrays()
    paths = make_dataset(directory, arrays, gz=gz)
    good = encode(stem, arrays[stem])
    wrong = LABELS_MAGIC if MAGIC_OF[stem] == IMAGES_MAGIC else IMAGES_MAGIC
    path = replace_file(paths, stem, struct.pack(">I", wrong) + good[4:])
    with pytest.raises(IdxError) as ei:
        load_dataset(directory)
    assert_idx_error(ei, path, f"bad magic number {wrong}", f"expected {MAGIC_OF[stem]}")


@pytest.mark.parametrize("magic", [0, 0x0803 << 16, 0x00000D03, 0x00000804, 0xFFFFFFFF])
def test_bad_magic_number_other_values(magic):
    content = struct.pack(">I", magic) + b"\0" * 100
    with pytest.raises(IdxError) as ei:
        parse_idx(content, Path("f"), IMAGES_MAGIC)
    assert_idx_error(ei, Path("f"), f"bad magic number {magic}", "expected 2051")


@pytest.mark.parametrize("stem", [TRAIN_IMAGES, TEST_LABELS])
@pytest.mark.parametrize("size", [0, 3])
def test_too_short_for_magic(dataset, stem, size):
    directory, paths, arrays = dataset
    path = replace_file(paths, stem, encode(stem, arrays[stem])[:size])
    with pytest.raises(IdxError) as ei:
        load_dataset(directory)
    assert_idx_error(ei, path, "truncated", f"{size} bytes")


@pytest.mark.parametrize("stem,size,header", [(TRAIN_IMAGES, 10, 16), (TEST_IMAGES, 15, 16), (TRAIN_LABELS, 7, 8), (TEST_LABELS, 4, 8)])
def test_truncated_header(dataset, stem, size, header):
    directory, paths, arrays = dataset
    path = replace_file(paths, stem, encode(stem, arrays[stem])[:size])
    with pytest.raises(IdxError) as ei:
        load_dataset(directory)
    assert_idx_error(ei, path, "truncated", f"{header}-byte header", f"got {size} bytes")


@pytest.mark.parametrize("gz", [True, False], ids=["gz", "raw"])
def test_truncated_data_mnist_sized(tmp_path, gz):
    """10 images of 28x28 = 16 + 7840 = 7856 bytes; cut to 1000."""
    directory = tmp_path / "d"
    arrays = make_arrays(n_train=10, n_test=4, rows=28, cols=28)
    paths = make_dataset(directory, arrays, gz=gz)
    path = replace_file(paths, TRAIN_IMAGES, images_bytes(arrays[TRAIN_IMAGES])[:1000])
    with pytest.raises(IdxError) as ei:
        load_dataset(directory)
    msg = assert_idx_error(ei, path, "truncated", "expected 7856 bytes, got 1000")
    assert path.name in msg


def test_truncated_labels_data(dataset):
    directory, paths, arrays = dataset
    full = labels_bytes(arrays[TEST_LABELS])  # 8 + 7 bytes
    path = replace_file(paths, TEST_LABELS, full[:-1])
    with pytest.raises(IdxError) as ei:
        load_dataset(directory)
    assert_idx_error(ei, path, "truncated", f"expected {len(full)} bytes, got {len(full) - 1}")


@pytest.mark.parametrize("stem", STEMS)
def test_trailing_data(dataset, stem):
    directory, paths, arrays = dataset
    full = encode(stem, arrays[stem])
    path = replace_file(paths, stem, full + b"\x00\x01\x02")
    with pytest.raises(IdxError) as ei:
        load_dataset(directory)
    assert_idx_error(ei, path, "trailing data", f"expected {len(full)} bytes, got {len(full) + 3}")


def test_gz_name_but_not_gzip(dataset):
    directory, paths, arrays = dataset
    path = paths[TRAIN_LABELS]
    path.write_bytes(labels_bytes(arrays[TRAIN_LABELS]))  # raw IDX under a .gz name
    with pytest.raises(IdxError) as ei:
        load_dataset(directory)
    assert_idx_error(ei, path, "not a gzip file")


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda gz: gz[: len(gz) // 2],  # cut short inside the deflate stream
        lambda gz: gz[:-4],  # trailer cut off
        lambda gz: gz[:2],  # only the gzip magic
        lambda gz: gz[:-8] + bytes(b ^ 0xFF for b in gz[-8:-4]) + gz[-4:],  # CRC wrong
        lambda gz: gz[:20] + bytes([gz[20] ^ 0xFF]) + gz[21:],  # deflate data damaged
        lambda gz: gz + b"garbage",  # junk after the gzip member
    ],
    ids=["half", "no-trailer", "magic-only", "bad-crc", "flipped-byte", "trailing-junk"],
)
def test_corrupt_gzip(dataset, corrupt):
    directory, paths, _ = dataset
    path = paths[TRAIN_IMAGES]
    path.write_bytes(corrupt(path.read_bytes()))
    with pytest.raises(IdxError) as ei:
        load_dataset(directory)
    assert_idx_error(ei, path, "corrupt gzip data")


@pytest.mark.parametrize("split,n_images,n_labels", [("train", 12, 11), ("train", 12, 13), ("test", 7, 3)])
def test_image_and_label_counts_disagree(tmp_path, split, n_images, n_labels):
    directory = tmp_path / "d"
    arrays = make_arrays()
    img_stem, lab_stem = (TRAIN_IMAGES, TRAIN_LABELS) if split == "train" else (TEST_IMAGES, TEST_LABELS)
    arrays[img_stem] = arrays[img_stem][:n_images]
    arrays[lab_stem] = np.resize(arrays[lab_stem], n_labels)
    paths = make_dataset(directory, arrays)
    with pytest.raises(IdxError) as ei:
        load_dataset(directory)
    msg = assert_idx_error(ei, paths[lab_stem], f"{n_labels} labels", f"{n_images} images")
    assert display_path(paths[img_stem]) in msg


@pytest.mark.parametrize("stem", [TRAIN_LABELS, TEST_LABELS])
@pytest.mark.parametrize("bad", [10, 12, 255])
def test_label_out_of_range(dataset, stem, bad):
    directory, paths, arrays = dataset
    labels = arrays[stem].copy()
    labels[2] = bad
    path = replace_file(paths, stem, labels_bytes(labels))
    with pytest.raises(IdxError) as ei:
        load_dataset(directory)
    assert_idx_error(ei, path, f"label {bad} at index 2", "out of range 0..9")


@pytest.mark.parametrize("test_shape", [(8, 7), (7, 8), (28, 28), (64, 1)])
def test_train_and_test_image_sizes_differ(tmp_path, test_shape):
    directory = tmp_path / "d"
    arrays = make_arrays(rows=8, cols=8)
    arrays[TEST_IMAGES] = np.zeros((len(arrays[TEST_LABELS]), *test_shape), dtype=np.uint8)
    paths = make_dataset(directory, arrays)
    with pytest.raises(IdxError) as ei:
        load_dataset(directory)
    assert_idx_error(ei, paths[TEST_IMAGES], f"images are {test_shape[0]}x{test_shape[1]}", "training images are 8x8")


@pytest.mark.parametrize("stem", [TRAIN_IMAGES, TEST_IMAGES])
@pytest.mark.parametrize("dims", [(3, 0, 8), (3, 8, 0), (3, 0, 0), (0, 0, 8)])
def test_zero_sized_image_dimensions(dataset, stem, dims):
    directory, paths, _ = dataset
    path = replace_file(paths, stem, idx_bytes(IMAGES_MAGIC, dims))
    with pytest.raises(IdxError) as ei:
        load_dataset(directory)
    assert_idx_error(ei, path, "bad dimensions", "x".join(map(str, dims)), "must be positive")


@pytest.mark.parametrize("split", ["train", "test"])
def test_no_images(tmp_path, split):
    directory = tmp_path / "d"
    arrays = make_arrays()
    img_stem, lab_stem = (TRAIN_IMAGES, TRAIN_LABELS) if split == "train" else (TEST_IMAGES, TEST_LABELS)
    arrays[img_stem] = arrays[img_stem][:0]
    arrays[lab_stem] = arrays[lab_stem][:0]
    paths = make_dataset(directory, arrays)
    with pytest.raises(IdxError) as ei:
        load_dataset(directory)
    assert_idx_error(ei, paths[img_stem], "holds no images")


@pytest.mark.parametrize("stem", STEMS)
def test_checksum_mismatch_synthetic(dataset, stem):
    directory, paths, arrays = dataset
    lines = [f"{sha256(encode(s, arrays[s]))}  {s}" for s in STEMS if s != stem]
    lines.append(f"{'0' * 64}  {stem}")
    (directory / "SHA256SUMS").write_text("\n".join(lines) + "\n")
    with pytest.raises(IdxError) as ei:
        load_dataset(directory)
    msg = assert_idx_error(ei, paths[stem], "checksum mismatch", "0" * 64)
    assert sha256(encode(stem, arrays[stem])) in msg


def test_message_path_is_relative_under_cwd(dataset, monkeypatch):
    directory, paths, arrays = dataset
    replace_file(paths, TRAIN_LABELS, labels_bytes(arrays[TRAIN_LABELS]) + b"x")
    monkeypatch.chdir(directory.parent)
    with pytest.raises(IdxError) as ei:
        load_dataset("synth")
    assert str(ei.value).startswith(f"synth/{TRAIN_LABELS}.gz: trailing data")


# --------------------------------------------------------------------------- hostile headers and checksum lists


def test_sha256sums_not_utf8_is_idx_error(dataset):
    directory, _, _ = dataset
    sums = directory / "SHA256SUMS"
    sums.write_bytes(b"\xff\xfe\x00garbage\n")
    with pytest.raises(IdxError) as ei:
        load_dataset(directory)
    assert_idx_error(ei, sums)


# Dims whose product overflows int64: the size must still be computed exactly.
OVERFLOW_DIMS = [
    (2**31, 2**31, 4),  # product 2**64 wraps to 0: a bare 16-byte header "matches", reshape raises ValueError
    (2**31, 2**31, 2),  # product 2**63 wraps negative: reported as "trailing data: expected -9223372036854775792"
    (2**32 - 1, 2**32 - 1, 2**32 - 1),  # wraps to a wrong positive number in the "expected N bytes" message
]


@pytest.mark.parametrize("dims", OVERFLOW_DIMS, ids=["wraps-to-0", "wraps-negative", "wraps-positive"])
def test_huge_dims_reported_as_truncated(dims):
    content = idx_bytes(IMAGES_MAGIC, dims)
    true_size = 16 + dims[0] * dims[1] * dims[2]
    with pytest.raises(IdxError) as ei:
        parse_idx(content, Path("huge"), IMAGES_MAGIC)
    assert_idx_error(ei, Path("huge"), "truncated", f"expected {true_size} bytes, got 16")


def test_huge_dims_through_load_dataset(dataset):
    directory, paths, _ = dataset
    path = replace_file(paths, TRAIN_IMAGES, idx_bytes(IMAGES_MAGIC, (2**31, 2**31, 4)))
    with pytest.raises(IdxError) as ei:
        load_dataset(directory)
    assert_idx_error(ei, path, "truncated")


# --------------------------------------------------------------------------- 4. shipped checksums are real


def test_shipped_files_match_sha256sums(shipped_files):
    table = read_sums(SHIPPED_DIR / "SHA256SUMS")
    assert set(table) == set(STEMS) | {f"{s}.gz" for s in STEMS}
    for stem, (gz, raw) in shipped_files.items():
        assert sha256(gz) == table[f"{stem}.gz"], stem
        assert sha256(raw) == table[stem], stem


def test_tampered_shipped_copy_fails_checksum(tmp_path, shipped_files):
    copy = tmp_path / "mnist-copy"
    copy.mkdir()
    for stem in STEMS:
        shutil.copyfile(SHIPPED_DIR / f"{stem}.gz", copy / f"{stem}.gz")
    shutil.copyfile(SHIPPED_DIR / "SHA256SUMS", copy / "SHA256SUMS")

    raw = bytearray(shipped_files[TRAIN_IMAGES][1])
    offset = 16 + 1234 * 784 + 14 * 28 + 14  # a pixel in the middle of image 1234
    raw[offset] ^= 0x01
    tampered = bytes(raw)
    target = copy / f"{TRAIN_IMAGES}.gz"
    target.write_bytes(gzip.compress(tampered, compresslevel=1))
    # Still a perfectly valid IDX file: only the checksum can catch the change.
    assert parse_idx(tampered, target, IMAGES_MAGIC).shape == (60000, 28, 28)

    with pytest.raises(IdxError) as ei:
        load_dataset(copy)
    table = read_sums(SHIPPED_DIR / "SHA256SUMS")
    assert_idx_error(ei, target, "checksum mismatch", table[TRAIN_IMAGES], sha256(tampered))


# --------------------------------------------------------------------------- 5. property tests

SMALL_IMAGES = images_bytes(np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5))  # 16 + 60 bytes
SMALL_LABELS = labels_bytes(np.array([0, 9, 4], dtype=np.uint8))  # 8 + 3 bytes
BASES = {IMAGES_MAGIC: SMALL_IMAGES, LABELS_MAGIC: SMALL_LABELS}


@st.composite
def mutated(draw, base: bytes, header_len: int) -> bytes:
    """`base` after a random sequence of header byte flips, truncations and appends."""
    content = bytearray(base)
    ops = draw(st.lists(st.sampled_from(["flip", "truncate", "append", "set-dim"]), min_size=1, max_size=4))
    for op in ops:
        if op == "flip" and content:
            i = draw(st.integers(0, min(header_len, len(content)) - 1))
            content[i] ^= draw(st.integers(1, 255))
        elif op == "truncate":
            content = content[: draw(st.integers(0, len(content)))]
        elif op == "append":
            content += draw(st.binary(min_size=1, max_size=40))
        elif op == "set-dim" and len(content) >= header_len:
            i = draw(st.integers(0, header_len // 4 - 2))
            value = draw(st.one_of(st.integers(0, 64), st.integers(0, 2**32 - 1)))
            content[4 + 4 * i : 8 + 4 * i] = struct.pack(">I", value)
    return bytes(content)


def images_or_labels():
    return st.sampled_from([IMAGES_MAGIC, LABELS_MAGIC])


def check_parse(content: bytes, magic: int) -> None:
    try:
        out = parse_idx(content, Path("prop") / "f", magic)
    except IdxError as e:
        assert "\n" not in str(e)
        assert str(e).startswith(display_path(Path("prop") / "f") + ": ")
        return
    header = 16 if magic == IMAGES_MAGIC else 8
    assert isinstance(out, np.ndarray) and out.dtype == np.uint8
    assert out.ndim == (3 if magic == IMAGES_MAGIC else 1)
    assert out.size == len(content) - header
    assert out.tobytes() == content[header:]


PROP = settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


@PROP
@given(content=st.binary(max_size=120), magic=images_or_labels())
def test_parse_idx_random_bytes(content, magic):
    check_parse(content, magic)


@PROP
@given(data=st.data(), magic=images_or_labels())
def test_parse_idx_random_bytes_with_right_magic(data, magic):
    """Random bytes after a correct magic number, so the header and size paths get exercised."""
    content = struct.pack(">I", magic) + data.draw(st.binary(max_size=120))
    check_parse(content, magic)


@PROP
@given(data=st.data(), magic=images_or_labels())
def test_parse_idx_mutations(data, magic):
    base = BASES[magic]
    content = data.draw(mutated(base, 16 if magic == IMAGES_MAGIC else 8))
    check_parse(content, magic)


@PROP
@given(content=st.binary(max_size=200), gz_name=st.booleans())
def test_read_bytes_random_content(content, gz_name):
    """read_bytes on arbitrary bytes (also gzip-looking ones) returns bytes or raises IdxError."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / ("f.gz" if gz_name else "f")
        path.write_bytes(content)
        try:
            out = read_bytes(path)
        except IdxError as e:
            assert "\n" not in str(e) and str(e).startswith(display_path(path) + ": ")
        else:
            assert isinstance(out, bytes)


@PROP
@given(data=st.data())
def test_read_bytes_mutated_gzip(data):
    base = gzip.compress(SMALL_IMAGES)
    damaged = data.draw(mutated(base, len(base)))
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "f.gz"
        path.write_bytes(damaged)
        try:
            content = read_bytes(path)
        except IdxError as e:
            assert "\n" not in str(e)
        else:
            check_parse(content, IMAGES_MAGIC)


@settings(max_examples=50, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    stem=st.sampled_from(STEMS),
    gz=st.booleans(),
    mutate_compressed=st.booleans(),
)
def test_load_dataset_with_mutated_file(data, stem, gz, mutate_compressed):
    """One file of a valid tiny dataset mutated: load_dataset returns a Dataset or raises IdxError."""
    arrays = {
        TRAIN_IMAGES: np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5),
        TRAIN_LABELS: np.array([0, 9, 4], dtype=np.uint8),
        TEST_IMAGES: np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5)[::-1].copy(),
        TEST_LABELS: np.array([1, 2, 3], dtype=np.uint8),
    }
    with tempfile.TemporaryDirectory() as d:
        directory = Path(d) / "prop-set"
        paths = make_dataset(directory, arrays, gz=gz)
        raw = encode(stem, arrays[stem])
        if gz and mutate_compressed:
            compressed = paths[stem].read_bytes()
            paths[stem].write_bytes(data.draw(mutated(compressed, len(compressed))))
        else:
            header_len = 16 if MAGIC_OF[stem] == IMAGES_MAGIC else 8
            replace_file(paths, stem, data.draw(mutated(raw, header_len)))
        try:
            ds = load_dataset(directory)
        except IdxError as e:
            msg = str(e)
            assert "\n" not in msg
            assert msg.startswith(display_path(directory)), msg
        else:
            assert isinstance(ds, Dataset)
            assert ds.name == "prop-set"
            assert ds.x_train.shape[1] == ds.x_test.shape[1] == ds.n_features
            assert len(ds.x_train) == len(ds.y_train) > 0
            assert len(ds.x_test) == len(ds.y_test) > 0
            assert ds.y_train.max() < 10 and ds.y_test.max() < 10


def test_files_table_matches_expected_stems():
    assert {stem: magic for stem, magic in FILES.values()} == MAGIC_OF
