"""Property-based fuzzing of every loader: random bytes and random mutations of real
IDX and .npz files are either loaded correctly or refused with the documented error
(IdxError for the dataset readers, WeightsError for weight files), never another
exception, and never loaded as garbage.

Loaders covered: dtrain.data.idx.parse_idx and read_bytes, dtrain.data.mnist.load_dataset,
dtrain.model.weights.read_weights and dtrain.model.inference.load_model.

Each property has an oracle that is independent of the loader where it can be: the IDX
format as documented (accepted exactly when the header, dims and length agree, and then
the array is the body bytes), gzip's own decompression, and, for hand-built .npz files,
the verdict each corruption must get (a NaN weight, an object array, a missing layer:
refused; a float64 or big-endian copy of valid weights: loaded, with those values).

Known loader bugs (see KNOWN_BUGS; none open now): a bug found here gets a KNOWN_BUGS entry
and a minimal reproducer in test_loader_bug_reproducers, marked xfail(strict=True). The fuzz
tests tolerate exactly those failures (same exception type, raised from the same place) so the
file stays green while the bugs are open; any other exception fails them. When a bug is fixed,
its reproducer XPASSes and fails: remove its xfail mark and its KNOWN_BUGS entry. The ten bugs
this file first found are fixed; their reproducers stay as ordinary tests of the refusal.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import json
import lzma
import math
import struct
import tempfile
import tokenize
import traceback
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from dtrain import __version__
from dtrain.data.idx import IMAGES_MAGIC, LABELS_MAGIC, IdxError, display_path, parse_idx, read_bytes
from dtrain.data.mnist import SHIPPED_DIR, Dataset, load_dataset
from dtrain.errors import UserError
from dtrain.data.mnist import FILES
from dtrain.model import mlp
from dtrain.model.inference import Model, load_model
from dtrain.model.weights import MAX_INPUT_SCALE, MAX_WEIGHT, WeightsError, read_weights, save_weights

# Budget: the whole file must stay well under ~20 s on a slow 2-core machine.
FUZZ = settings(max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

# The loader's own table of the four files: their names and magic numbers.
STEMS = tuple(stem for stem, _ in FILES.values())
TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS = STEMS
MAGIC_OF = dict(FILES.values())
HEADER_LEN = {IMAGES_MAGIC: 16, LABELS_MAGIC: 8}
GZIP_MAGIC = b"\x1f\x8b"
INTP_MAX = np.iinfo(np.intp).max


# =============================================================== known loader bugs

# name -> (exception type, file names the innermost Python frame raising it may have). Only
# these failures are tolerated by the fuzz tests, and only while open. Fixed (and kept as tests in
# test_loader_bug_reproducers): idx-empty-huge-sides, npz-member-not-npy, meta-activation-unhashable,
# npy-header-unhashable-key, npy-header-tokenize, npy-header-huge-shape, npy-header-overflow-shape,
# npy-metadata-invalid-ucs4, zip-corrupt-deflate, zip-corrupt-lzma.
NPY_FORMAT = ("_format_impl.py", "format.py")  # numpy.lib.format: numpy 2.x, 1.x
KNOWN_BUGS: dict[str, tuple[type[BaseException], tuple[str, ...]]] = {}


def known_bug(e: BaseException) -> str | None:
    """The KNOWN_BUGS name whose signature (type, file raising it) `e` has, or None."""
    frames = traceback.extract_tb(e.__traceback__)
    where = Path(frames[-1].filename).name if frames else None
    for name, (kind, places) in KNOWN_BUGS.items():
        # numpy raises a MemoryError subclass (_ArrayMemoryError)
        if (type(e) is kind or (kind is MemoryError and isinstance(e, MemoryError))) and where in places:
            return name
    return None


def tolerate_known_bug(e: BaseException) -> None:
    """Re-raise `e` unless it is a known, open bug (then record it as a hypothesis event)."""
    name = known_bug(e)
    if name is None:
        raise e
    event(f"known bug: {name}")


# ======================================================================= IDX: oracle


def idx(magic: int, dims: tuple[int, ...], body: bytes = b"") -> bytes:
    return struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in dims) + body


def idx_verdict(content: bytes, magic: int) -> tuple[int, ...] | None:
    """The documented format, independently: the dims if `content` is a valid IDX file, else None."""
    if len(content) < 4 or int.from_bytes(content[:4], "big") != magic:
        return None
    header = HEADER_LEN[magic]
    if len(content) < header:
        return None
    dims = struct.unpack(f">{(header - 4) // 4}I", content[4:header])
    if magic == IMAGES_MAGIC and 0 in dims[1:]:
        return None
    if len(content) != header + math.prod(dims):
        return None
    if math.prod(dims[1:]) > INTP_MAX:  # 0 images, each too large for any array: "bad dimensions"
        return None
    return dims


def check_parse(content: bytes, magic: int) -> np.ndarray | None:
    """parse_idx accepts exactly the valid files (returning their body) and refuses the rest with IdxError."""
    path = Path("fuzz") / "file-idx"
    expected = idx_verdict(content, magic)
    try:
        out = parse_idx(content, path, magic)
    except IdxError as e:
        assert isinstance(e, UserError)
        msg = str(e)
        assert "\n" not in msg and msg.startswith(display_path(path) + ": "), msg
        assert expected is None, f"valid IDX file {expected} refused: {msg}"
        return None
    except Exception as e:
        tolerate_known_bug(e)
        return None
    assert expected is not None, f"invalid IDX content accepted as {out.shape}"
    assert isinstance(out, np.ndarray) and out.dtype == np.uint8
    assert out.shape == expected
    assert out.tobytes() == content[HEADER_LEN[magic] :]
    return out


# ================================================================ real MNIST bases


@functools.cache
def real_raw(stem: str) -> bytes:
    return gzip.decompress((SHIPPED_DIR / f"{stem}.gz").read_bytes())


@functools.cache
def real_gz(stem: str) -> bytes:
    return (SHIPPED_DIR / f"{stem}.gz").read_bytes()


def real_prefix(stem: str, n: int, start: int = 0) -> bytes:
    """Items start..start+n of a real file, re-headered as a valid IDX file of n items."""
    raw, magic = real_raw(stem), MAGIC_OF[stem]
    header = HEADER_LEN[magic]
    dims = struct.unpack(f">{(header - 4) // 4}I", raw[4:header])
    item = math.prod(dims[1:])
    return idx(magic, (n, *dims[1:]), raw[header + start * item : header + (start + n) * item])


@functools.cache
def idx_bases() -> dict[int, list[bytes]]:
    """Real IDX contents to mutate: the whole real test-labels file, and 6 real test images."""
    return {
        LABELS_MAGIC: [real_raw(TEST_LABELS), real_prefix(TEST_LABELS, 25, start=100)],
        IMAGES_MAGIC: [real_prefix(TEST_IMAGES, 6, start=40)],
    }


# ========================================================================= mutations

U32 = st.one_of(
    st.sampled_from([0, 1, 2, 27, 28, 29, 255, 256, 2**31 - 1, 2**31, 2**31 + 1, 2**32 - 1]),
    st.integers(0, 64),
    st.integers(0, 2**32 - 1),
)


@st.composite
def mutated(draw, base: bytes, hot: tuple[int, ...] = (), hot_span: int = 16) -> bytes:
    """`base` after 1-4 random edits: byte flips and overwrites (often near a `hot` offset, e.g. a
    header), 32-bit word overwrites, truncation, appended, inserted or deleted bytes."""
    data = bytearray(base)

    def index(extra: int = 0) -> int:
        top = len(data) - 1 + extra
        if hot and draw(st.booleans()):
            at = draw(st.sampled_from(hot)) + draw(st.integers(0, hot_span - 1))
            return min(max(at, 0), top)
        return draw(st.integers(0, top))

    ops = st.sampled_from(["flip", "set", "word", "truncate", "append", "insert", "delete"])
    for op in draw(st.lists(ops, min_size=1, max_size=4)):
        if op in ("flip", "set", "word", "delete") and not data:
            continue
        if op == "flip":
            data[index()] ^= draw(st.integers(1, 255))
        elif op == "set":
            data[index()] = draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xFF]) | st.integers(0, 255))
        elif op == "word":
            i = index()
            order = draw(st.sampled_from([">I", "<I"]))
            data[i : i + 4] = struct.pack(order, draw(U32))
        elif op == "truncate":
            del data[draw(st.integers(0, len(data))) :]
        elif op == "append":
            data += draw(st.binary(min_size=1, max_size=64) | st.just(b"\x00" * 8))
        elif op == "insert":
            i = index(extra=1)
            data[i:i] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            i = index()
            del data[i : i + draw(st.integers(1, 16))]
    return bytes(data)


@st.composite
def idx_dims_mutation(draw, base: bytes, magic: int) -> bytes:
    """`base` with its header dims rewritten (and the body left as it is, or cut to fit)."""
    header = HEADER_LEN[magic]
    ndim = (header - 4) // 4
    dims = [draw(U32) for _ in range(ndim)]
    body = base[header:]
    if draw(st.booleans()) and math.prod(dims) <= len(body):
        body = body[: math.prod(dims)]
    return idx(magic, tuple(dims), body)


# ========================================================================= 1. parse_idx

MAGICS = st.sampled_from([IMAGES_MAGIC, LABELS_MAGIC])


def test_real_bases_are_valid_idx():
    """The oracle and the bases are sound: every unmutated base parses to the expected array."""
    raw = real_raw(TEST_IMAGES)
    assert check_parse(raw, IMAGES_MAGIC).shape == (10000, 28, 28)
    labels = check_parse(real_raw(TEST_LABELS), LABELS_MAGIC)
    assert labels.shape == (10000,) and labels.max() == 9
    for magic, bases in idx_bases().items():
        for base in bases:
            out = check_parse(base, magic)
            assert out is not None and len(out) > 0
            other = IMAGES_MAGIC if magic == LABELS_MAGIC else LABELS_MAGIC
            assert check_parse(base, other) is None  # wrong magic: refused
    first = check_parse(idx_bases()[IMAGES_MAGIC][0], IMAGES_MAGIC)
    assert np.array_equal(first, check_parse(raw, IMAGES_MAGIC)[40:46])


@FUZZ
@given(content=st.binary(max_size=96), magic=MAGICS)
def test_parse_idx_random_bytes(content, magic):
    check_parse(content, magic)


@FUZZ
@given(data=st.data(), magic=MAGICS)
def test_parse_idx_random_header_and_body(data, magic):
    """The right magic number (or a near miss), random dims (usually as many as the magic says),
    and a body of exactly, about, or nothing like the length the dims give."""
    header_magic = data.draw(st.sampled_from([magic, magic, magic, magic ^ 2, magic + 256, IMAGES_MAGIC + LABELS_MAGIC - magic]))
    ndim = data.draw(st.sampled_from([(HEADER_LEN[magic] - 4) // 4] * 3 + [0, 1, 2, 3, 4]))
    dims = [data.draw(st.integers(0, 6) | U32) for _ in range(ndim)]
    size = math.prod(dims)
    length = data.draw(st.sampled_from([size, size, size - 1, size + 1, 0]) if size < 4096 else st.integers(0, 64))
    body = data.draw(st.binary(min_size=max(length, 0), max_size=max(length, 0)))
    check_parse(idx(header_magic, tuple(dims), body), magic)


@FUZZ
@given(data=st.data(), magic=MAGICS)
def test_parse_idx_mutated_real_files(data, magic):
    """Real MNIST test labels and images, mutated: flips, truncation, appends, header dims rewritten."""
    base = data.draw(st.sampled_from(idx_bases()[magic]))
    header = HEADER_LEN[magic]
    content = data.draw(
        st.one_of(
            mutated(base, hot=(0,), hot_span=header),
            idx_dims_mutation(base, magic),
            st.integers(0, len(base)).map(lambda n: base[:n]),
        )
    )
    check_parse(content, magic)


# ======================================================================== 2. read_bytes


def check_read_bytes(path: Path, raw: bytes, original: bytes | None = None) -> bytes | None:
    """read_bytes returns the file (decompressed when gzipped) or raises IdxError; never garbage.

    `original`: the content `raw` was gzipped from before it was mutated; gzip's CRC-32 and
    length mean a mutated stream either fails or still decompresses to exactly this."""
    path.write_bytes(raw)
    is_gzip = raw[:2] == GZIP_MAGIC
    try:
        reference = gzip.decompress(raw) if is_gzip else raw
    except Exception:
        reference = None
    if path.suffix == ".gz" and not is_gzip:
        reference = None
    try:
        out = read_bytes(path)
    except IdxError as e:
        msg = str(e)
        assert "\n" not in msg and msg.startswith(display_path(path) + ": "), msg
        assert reference is None, f"readable content refused: {msg}"
        return None
    assert reference is not None, "unreadable content accepted"
    assert isinstance(out, bytes) and out == reference
    if original is not None and is_gzip:
        assert out == original, "a damaged gzip stream decompressed to different content"
    return out


@FUZZ
@given(content=st.binary(max_size=128) | st.binary(max_size=64).map(lambda b: GZIP_MAGIC + b), gz_name=st.booleans())
def test_read_bytes_random_content(content, gz_name):
    with tempfile.TemporaryDirectory() as d:
        check_read_bytes(Path(d) / ("f.gz" if gz_name else "f"), content)


@FUZZ
@given(data=st.data(), gz_name=st.booleans())
def test_read_bytes_mutated_real_gzip(data, gz_name):
    """The real t10k-labels .gz (4.5 KB), damaged: in the gzip header, the trailer or anywhere."""
    base = real_gz(TEST_LABELS)
    damaged = data.draw(mutated(base, hot=(0, len(base) - 8), hot_span=10))
    with tempfile.TemporaryDirectory() as d:
        out = check_read_bytes(Path(d) / ("f.gz" if gz_name else "f"), damaged, original=real_raw(TEST_LABELS))
    if out is not None and damaged[:2] == GZIP_MAGIC:
        check_parse(out, LABELS_MAGIC)


# ====================================================================== 3. load_dataset

N_TRAIN, N_TEST = 20, 10


@functools.cache
def dataset_files() -> dict[str, bytes]:
    """A small valid dataset of real MNIST items: 20 train and 10 test 28x28 images."""
    return {
        TRAIN_IMAGES: real_prefix(TEST_IMAGES, N_TRAIN, start=0),
        TRAIN_LABELS: real_prefix(TEST_LABELS, N_TRAIN, start=0),
        TEST_IMAGES: real_prefix(TEST_IMAGES, N_TEST, start=N_TRAIN),
        TEST_LABELS: real_prefix(TEST_LABELS, N_TEST, start=N_TRAIN),
    }


def decoded(raw: bytes) -> bytes | None:
    """What read_bytes should see: gunzipped when gzip magic, None when that fails."""
    if raw[:2] != GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except Exception:
        return None


@st.composite
def replacement(draw, stem: str) -> tuple[bytes, bool]:
    """(bytes to write, under a .gz name?) replacing `stem` in the small dataset."""
    files = dataset_files()
    base, magic = files[stem], MAGIC_OF[stem]
    kinds = ["random", "mutated", "dims", "mutated-gz", "swapped", "same", "revalued"]
    kind = draw(st.sampled_from(kinds + ["reshaped"] * (magic == IMAGES_MAGIC)))
    if kind == "random":
        return draw(st.binary(max_size=200)), draw(st.booleans())
    if kind == "revalued":  # a valid header, other values: labels anywhere in 0..255, other pixels
        header = HEADER_LEN[magic]
        body = draw(st.binary(min_size=len(base) - header, max_size=len(base) - header))
        content = base[:header] + body
    elif kind == "reshaped":  # the same pixels, as images of another size than the other split's
        rows = draw(st.sampled_from([1, 2, 4, 7, 14, 16, 49, 56, 98, 112, 196, 392, 784]))
        content = idx(magic, (idx_verdict(base, magic)[0], rows, 784 // rows), base[16:])
    elif kind == "mutated":
        content = draw(mutated(base, hot=(0,), hot_span=HEADER_LEN[magic]))
    elif kind == "dims":
        content = draw(idx_dims_mutation(base, magic))
    elif kind == "swapped":
        content = files[draw(st.sampled_from([s for s in STEMS if s != stem]))]
    elif kind == "same":
        content = base
    else:
        gz = gzip.compress(base, compresslevel=1)
        return draw(mutated(gz, hot=(0, len(gz) - 8), hot_span=10)), draw(st.booleans())
    gz_name = draw(st.booleans())
    return (gzip.compress(content, compresslevel=1) if gz_name else content), gz_name


def write_dataset(directory: Path, gz: bool, stem: str | None = None, raw: bytes = b"", gz_name: bool = False) -> None:
    directory.mkdir()
    for s, content in dataset_files().items():
        if s == stem:
            (directory / (f"{s}.gz" if gz_name else s)).write_bytes(raw)
        else:
            (directory / (f"{s}.gz" if gz else s)).write_bytes(gzip.compress(content, compresslevel=1) if gz else content)


def dataset_verdict(stem: str, content: bytes | None) -> bool:
    """Independently: is the small dataset, with `stem`'s content replaced, a valid one?"""
    if content is None or idx_verdict(content, MAGIC_OF[stem]) is None:
        return False
    contents = {**dataset_files(), stem: content}
    dims = {s: idx_verdict(c, MAGIC_OF[s]) for s, c in contents.items()}
    for x, y in ((TRAIN_IMAGES, TRAIN_LABELS), (TEST_IMAGES, TEST_LABELS)):
        if dims[x][0] != dims[y][0] or dims[x][0] == 0:
            return False
        if max(contents[y][8:]) >= 10:
            return False
    return dims[TRAIN_IMAGES][1:] == dims[TEST_IMAGES][1:]


@FUZZ
@given(stem=st.sampled_from(STEMS), gz=st.booleans(), data=st.data())
def test_load_dataset_with_one_file_replaced(stem, gz, data):
    """One of the four files replaced by random bytes, a mutated (or gzipped and mutated) copy, a copy
    with new header dims, or another of the four: a correct Dataset or IdxError, as the format says."""
    raw, gz_name = data.draw(replacement(stem))
    content = decoded(raw) if (raw[:2] == GZIP_MAGIC or not gz_name) else None
    with tempfile.TemporaryDirectory() as d:
        directory = Path(d) / "fuzz-set"
        write_dataset(directory, gz, stem, raw, gz_name)
        try:
            ds = load_dataset(directory)
        except IdxError as e:
            msg = str(e)
            assert "\n" not in msg and msg.startswith(display_path(directory)), msg
            assert not dataset_verdict(stem, content), f"valid dataset refused: {msg}"
            return
        except Exception as e:
            tolerate_known_bug(e)
            return
    assert dataset_verdict(stem, content), "invalid dataset accepted"
    assert isinstance(ds, Dataset) and ds.name == "fuzz-set"
    contents = {**dataset_files(), stem: content}
    for s, arr in zip(STEMS, (ds.x_train, ds.y_train, ds.x_test, ds.y_test)):
        assert arr.dtype == np.uint8
        assert arr.tobytes() == contents[s][HEADER_LEN[MAGIC_OF[s]] :], s
    assert ds.x_train.shape == (len(ds.y_train), ds.n_features) and ds.x_test.shape == (len(ds.y_test), ds.n_features)
    assert math.prod(ds.image_shape) == ds.n_features


SUMS_LINES = st.lists(
    st.tuples(st.sampled_from(["ab" * 32, "{sha}", "{SHA}", "zz", ""]), st.sampled_from([*STEMS, "*" + TEST_LABELS, "other", ""]))
)


@settings(FUZZ, max_examples=30)
@given(sums=st.binary(max_size=300) | SUMS_LINES)
def test_load_dataset_with_random_sha256sums(sums):
    """A SHA256SUMS of random bytes, or of lines with right, wrong or malformed sums for some of the
    files: refused exactly when a listed file's sum is wrong (for random bytes: loaded or IdxError).
    A file listed twice is judged by its last line (read_checksums keeps the last), so an earlier
    wrong line for it may or may not be noticed."""
    files = dataset_files()
    must_refuse = None  # None: either verdict
    if isinstance(sums, list):
        lines, last = [], {}
        for digest, name in sums:
            sha = hashlib.sha256(files.get(name.lstrip("*"), b"")).hexdigest()
            digest = digest.format(sha=sha, SHA=sha.upper())
            lines.append(f"{digest} {name}".strip())
            if name.lstrip("*") in files and digest:
                last.setdefault(name.lstrip("*"), []).append(digest.lower() == sha)
        if any(not oks[-1] for oks in last.values()):
            must_refuse = True
        elif all(all(oks) for oks in last.values()):
            must_refuse = False
        sums = ("\n".join(lines) + "\n").encode()
    with tempfile.TemporaryDirectory() as d:
        directory = Path(d) / "sums-set"
        write_dataset(directory, gz=False)
        (directory / "SHA256SUMS").write_bytes(sums)
        try:
            ds = load_dataset(directory)
        except IdxError as e:
            assert "\n" not in str(e)
            assert must_refuse is not False, f"refused with right checksums: {e}"
            return
    assert not must_refuse, "a wrong checksum was not noticed"
    assert ds.x_train.shape == (N_TRAIN, 784) and ds.x_test.shape == (N_TEST, 784)


# ===================================================================== 4. weight files

SIZES = (784, 8, 10)
UNPICKLED: list[str] = []  # a pickled payload that ran would have appended here


def _ran_unpickled(tag: str) -> str:
    UNPICKLED.append(tag)
    return tag


class Payload:
    """Pickles to a call of _ran_unpickled: proof, if it ever runs, that a file was unpickled."""

    def __reduce__(self):
        return (_ran_unpickled, ("payload",))


def model_arrays(sizes, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    theta = mlp.he_init(sizes, rng)
    for _, b in mlp.unflatten(theta, sizes):
        b[...] = rng.normal(0.0, 0.1, size=b.shape)
    arrays = {}
    for l, (W, b) in enumerate(mlp.unflatten(theta, sizes), start=1):
        arrays[f"W{l}"], arrays[f"b{l}"] = W.copy(), b.copy()
    return arrays


def flat(arrays: dict[str, np.ndarray], n_layers: int) -> np.ndarray:
    return np.concatenate([arrays[f"{k}{l}"].astype(np.float32).ravel() for l in range(1, n_layers + 1) for k in "Wb"])


def zip_of(members: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compression) as zf:
        for name, content in members.items():
            zf.writestr(name, content)
    return buf.getvalue()


def npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


@functools.cache
def valid_weights() -> dict[str, bytes]:
    """A valid 784-8-10 weights file, as save_weights writes it and recompressed three ways."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "model.npz"
        theta = flat(model_arrays(SIZES, seed=3), len(SIZES) - 1)
        save_weights(path, theta, SIZES, {"activation": "relu", "input_scale": 1 / 255, "dataset": "mnist"})
        stored = path.read_bytes()
    with zipfile.ZipFile(io.BytesIO(stored)) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    out = {"stored": stored}
    for name, method in (("deflate", zipfile.ZIP_DEFLATED), ("bzip2", zipfile.ZIP_BZIP2), ("lzma", zipfile.ZIP_LZMA)):
        out[name] = zip_of(members, method)
    return out


def hot_offsets(data: bytes) -> tuple[int, ...]:
    """Where a zip's structure is: local headers and the start of each member (its .npy header),
    the central directory entries and the end record."""
    hot = []
    for sig in (b"PK\x03\x04", b"PK\x01\x02", b"PK\x05\x06"):
        at = data.find(sig)
        while at >= 0:
            hot.append(at)
            if sig == b"PK\x03\x04":
                name_len, extra_len = struct.unpack("<HH", data[at + 26 : at + 30])
                hot.extend(range(at + 30 + name_len + extra_len, at + 30 + name_len + extra_len + 128, 32))
            at = data.find(sig, at + 1)
    return tuple(hot)


def check_weights(path: Path, expected: str = "either", theta: np.ndarray | None = None, meta: dict | None = None) -> bool:
    """read_weights and load_model on `path` both load it or both raise WeightsError; a loaded model
    is sound (finite weights, none above MAX_WEIGHT in magnitude) and predicts finite probabilities.
    Returns whether it loaded.

    expected: "accept", "refuse" or "either"; theta/meta: what a loaded file must hold."""
    try:
        got_theta, got_meta = read_weights(path)
    except WeightsError as e:
        assert isinstance(e, UserError)
        msg = str(e)
        assert "\n" not in msg and str(path) in msg, msg
        assert expected != "accept", f"valid weights file refused: {msg}"
        with pytest.raises(WeightsError):
            load_model(path)
        return False
    except Exception as e:
        tolerate_known_bug(e)
        return False
    finally:
        assert not UNPICKLED, "a pickled payload in the file was unpickled"
    assert expected != "refuse", f"bad weights file accepted: {got_meta}"
    sizes = got_meta["layer_sizes"]
    assert got_theta.dtype == np.float32 and got_theta.shape == (mlp.n_params(sizes),)
    assert np.all(np.isfinite(got_theta)) and np.abs(got_theta).max() <= MAX_WEIGHT
    if theta is not None:
        assert got_theta.tobytes() == theta.astype(np.float32).tobytes(), "loaded different weights"
    if meta is not None:
        assert json.dumps(got_meta, sort_keys=True) == json.dumps(meta, sort_keys=True)
    model = load_model(path)
    assert isinstance(model, Model) and model.layer_sizes == tuple(sizes)
    assert model.theta.tobytes() == got_theta.tobytes()
    # The models here are small (at most 3 layers, at most 8 units after the input) and see a zero
    # image: with |w| <= MAX_WEIGHT no logit can exceed about 1e20, far from float32's 3.4e38, so the
    # probabilities must be finite. (Finite but huge weights such as 3e38, from a damaged header,
    # used to load and predict NaN; read_weights now refuses them.)
    zero = np.zeros(sizes[0], np.uint8)
    p = model.predict_proba(zero)
    assert p.shape == (sizes[-1],) and np.all(np.isfinite(p)) and np.all(p >= 0)
    assert abs(float(p.sum()) - 1) < 1e-4
    assert model.predict(zero) == int(np.argmax(p))
    assert not UNPICKLED, "a pickled payload in the file was unpickled"
    return True


@functools.cache
def valid_meta() -> dict:
    with np.load(io.BytesIO(valid_weights()["stored"]), allow_pickle=False) as archive:
        return json.loads(str(archive["metadata"]))


def test_valid_weights_bases_load():
    """The four unmutated bases load to the same weights (so a loaded mutation is comparable)."""
    theta = flat(model_arrays(SIZES, seed=3), len(SIZES) - 1)
    with tempfile.TemporaryDirectory() as d:
        for name, data in valid_weights().items():
            path = Path(d) / f"{name}.npz"
            path.write_bytes(data)
            assert check_weights(path, "accept", theta=theta, meta=valid_meta()), name
    assert valid_meta()["layer_sizes"] == list(SIZES) and valid_meta()["format"] == "dtrain-mlp"


@FUZZ
@given(
    content=st.binary(max_size=512)
    | st.binary(max_size=256).map(lambda b: b"PK\x03\x04" + b)
    | st.binary(max_size=256).map(lambda b: b"\x93NUMPY" + b)
    | st.binary(max_size=256).map(lambda b: b"PK\x05\x06" + b)
)
def test_weights_random_bytes(content):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "model.npz"
        path.write_bytes(content)
        check_weights(path, "refuse")


@FUZZ
@given(base=st.sampled_from(["stored", "stored", "deflate", "bzip2", "lzma"]), data=st.data())
def test_weights_mutated_valid_file(base, data):
    """A valid 784-8-10 file (stored as save_weights writes it, or deflate/bzip2/lzma-compressed),
    damaged by flips, overwrites, truncation, insertions, deletions and appends, mostly in its zip and
    .npy headers. Refused with WeightsError, or loaded with exactly the original weights."""
    original = valid_weights()[base]
    damaged = data.draw(mutated(original, hot=hot_offsets(original), hot_span=32))
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "model.npz"
        path.write_bytes(damaged)
        check_weights(path, "either", theta=flat(model_arrays(SIZES, seed=3), len(SIZES) - 1), meta=valid_meta())


# ----------------------------------------------- hand-built .npz archives (np.savez)

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)
META_KEYS = [
    "format", "format_version", "layer_sizes", "activation", "input_scale",  # read and checked
    "dataset", "dtrain_version", "test_accuracy", "extra",  # not interpreted by the reader
]
REQUIRED = {"format", "format_version", "layer_sizes", "activation"}
GOOD_FLOATS = ["<f2", "<f8", ">f4", ">f8", "g"]  # valid weights in another float type: loaded as float32
BAD_DTYPES = ["<i1", "<i4", "<u1", "<i8", "?", "<c8", "<c16", "<U3", "S3", "M8[s]", [("a", "<f4")]]


def worse(a: str, b: str) -> str:
    return max(a, b, key=["accept", "either", "refuse"].index)


def meta_value_verdict(key: str, value, sizes: list[int]) -> str:
    """What metadata[key] = value does to an otherwise valid file."""
    if key == "format":
        return "accept" if value == "dtrain-mlp" else "refuse"
    if key == "format_version":
        return "refuse" if isinstance(value, bool) or value != 1 else ("accept" if type(value) is int else "either")
    if key == "layer_sizes":
        ok = type(value) is list and all(type(n) is int for n in value) and value == sizes
        return "accept" if ok else "refuse"
    if key == "activation":
        return "accept" if isinstance(value, str) and value in ("relu", "sigmoid") else "refuse"
    if key == "input_scale":  # a positive number, int or float (not bool), at most MAX_INPUT_SCALE
        return "accept" if type(value) in (int, float) and 0 < value <= MAX_INPUT_SCALE else "refuse"
    return "accept"  # keys the reader does not interpret


def meta_verdict(meta: dict, sizes: list[int]) -> str:
    verdict = "refuse" if REQUIRED - set(meta) else "accept"
    for key, value in meta.items():
        verdict = worse(verdict, meta_value_verdict(key, value, sizes))
    return verdict


def text_verdict(text: str) -> str:
    """Metadata given as arbitrary text: refused unless it is a JSON object naming the format."""
    try:
        parsed = json.loads(text)
    except Exception:
        return "refuse"
    return "either" if isinstance(parsed, dict) and parsed.get("format") == "dtrain-mlp" else "refuse"


def arrays_verdict(arrays: dict[str, np.ndarray], sizes: list[int]) -> str:
    """The documented layout, independently: exactly W1, b1, ..., W_L, b_L, each of its layer's shape,
    floating point, finite once cast to float32 and no larger than MAX_WEIGHT in magnitude."""
    names = {f"{k}{l}" for l in range(1, len(sizes)) for k in "Wb"}
    if set(arrays) != names:
        return "refuse"
    for l, (n_prev, n) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
        for name, shape in ((f"W{l}", (n_prev, n)), (f"b{l}", (n,))):
            arr = arrays[name]
            if arr.shape != shape or arr.dtype.kind != "f":
                return "refuse"
            with np.errstate(over="ignore"):
                values = arr.astype(np.float32)
            if not np.all(np.isfinite(values)) or np.any(np.abs(values) > MAX_WEIGHT):
                return "refuse"
    return "accept"


ARRAY_KINDS = ["nonfinite", "overflow32", "good_float", "bad_dtype", "object", "shape", "drop_array", "extra_array", "rename"]
META_DICT_KINDS = [f"meta_value:{key}" for key in [*sorted(REQUIRED), "input_scale", "other"]] + ["meta_drop_key"]
META_ENTRY_KINDS = ["meta_drop", "meta_not_string", "meta_text", "meta_truncated", "meta_non_object", "meta_object"]
CORRUPTIONS = ARRAY_KINDS + META_DICT_KINDS + META_ENTRY_KINDS


@st.composite
def npz_case(draw, corruptions):
    """(entries for np.savez, writer, verdict, expected theta, expected metadata): a valid small model
    with the corruptions drawn from `corruptions` (a strategy for a list of CORRUPTIONS), and the
    verdict the format gives the result."""
    sizes = draw(st.lists(st.integers(1, 6), min_size=2, max_size=4))
    n_layers = len(sizes) - 1
    layer_names = [f"{k}{l}" for l in range(1, n_layers + 1) for k in "Wb"]
    arrays = model_arrays(sizes, seed=draw(st.integers(0, 2**16)))
    meta = {
        "format": "dtrain-mlp",
        "format_version": 1,
        "layer_sizes": list(sizes),
        "activation": draw(st.sampled_from(["relu", "sigmoid"])),
        "input_scale": 1 / 255,
        "dataset": "fuzz",
        "dtrain_version": __version__,
    }
    # The metadata entry: ("json", None) is json.dumps(meta) as written at the end; otherwise
    # (verdict, array or None to leave 'metadata' out), the last such corruption wins.
    meta_entry: tuple[str, np.ndarray | None] = ("json", None)
    for kind in draw(corruptions):
        present = sorted(n for n in arrays if n in layer_names)
        name = draw(st.sampled_from(present)) if present else None
        if kind in ("nonfinite", "overflow32", "good_float", "bad_dtype", "shape", "rename", "drop_array") and name is None:
            continue
        if kind in ("nonfinite", "overflow32", "good_float", "bad_dtype") and (
            arrays[name].dtype.kind != "f" or arrays[name].size == 0
        ):
            continue  # these rewrite the values of a float array (already refused otherwise)
        if kind == "nonfinite":
            arr = arrays[name]
            arr = arr.copy() if arr.dtype.itemsize >= 4 else arr.astype(np.float32)
            arr.flat[draw(st.integers(0, arr.size - 1))] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
            arrays[name] = arr
        elif kind == "overflow32":  # finite as float64, infinite as float32
            arr = arrays[name].astype(np.float64)
            arr.flat[draw(st.integers(0, arr.size - 1))] = draw(st.sampled_from([1e39, -1e39, 1e300, np.finfo(np.float64).max]))
            arrays[name] = arr
        elif kind == "good_float":
            with np.errstate(over="ignore"):  # an overflow32 value becomes inf: refused either way
                arrays[name] = arrays[name].astype(draw(st.sampled_from(GOOD_FLOATS)))
        elif kind == "bad_dtype":
            dtype = np.dtype(draw(st.sampled_from(BAD_DTYPES)))
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                arrays[name] = np.zeros(arrays[name].shape, dtype) if dtype.kind in "MV" else arrays[name].astype(dtype)
        elif kind == "object":  # np.savez pickles it (allow_pickle=True is its default)
            arr = np.empty(arrays[name].shape if name else (2,), dtype=object)
            arr.fill(None)
            if arr.size:
                arr.flat[0] = Payload()
            arrays[name or "W1"] = arr
        elif kind == "shape":  # another shape, often of the same size (transposed, flattened, an extra axis)
            arr = arrays[name]
            how = draw(st.sampled_from(["T", "flat", "axis", "other"]))
            if how == "T":  # a 0-d array (from an earlier "other" of shape ()) becomes a 1x1 one
                arrays[name] = arr.T.copy() if arr.ndim == 2 else arr[:, None] if arr.ndim else arr.reshape(1, 1)
            elif how == "flat":
                arrays[name] = arr.reshape(-1) if arr.ndim == 2 else arr.reshape(1, -1)
            elif how == "axis":
                arrays[name] = arr[None]
            else:
                arrays[name] = np.ones(tuple(draw(st.lists(st.integers(0, 7), max_size=3))), np.float32)
        elif kind == "drop_array":
            del arrays[name]
        elif kind == "extra_array":
            extra = draw(st.text("WbAZaz019_", min_size=1, max_size=5))
            if extra not in layer_names and extra != "metadata":
                arrays[extra] = np.zeros(draw(st.integers(0, 3)), np.float32)
        elif kind == "rename":
            new = draw(st.sampled_from([name.lower(), name.upper(), name + "0", name[0] + "0", "w" + name]))
            if new not in layer_names and new != "metadata" and new not in arrays:
                arrays[new] = arrays.pop(name)
        elif kind.startswith("meta_value:"):
            key = kind.removeprefix("meta_value:")
            if key == "other":
                key = draw(st.sampled_from([k for k in META_KEYS if k not in REQUIRED | {"input_scale"}]))
            meta[key] = draw(
                JSON_VALUES
                | st.sampled_from(
                    [True, 1.0, 0, 2, -1, "relu ", "RELU", "dtrain-mlp", [1, 1], 2**20 + 1, 1, 0.5, float("nan"), float("inf")]
                )
                | st.just(meta.get(key))
            )
        elif kind == "meta_drop_key":
            meta.pop(draw(st.sampled_from(META_KEYS)), None)
        elif kind == "meta_drop":
            meta_entry = ("refuse", None)
        elif kind == "meta_not_string":
            text = json.dumps(meta)
            choices = [np.array(text.encode()), np.array([text]), np.array([text, text]), np.array(1.0), np.array(7), np.zeros((2, 2))]
            meta_entry = ("refuse", draw(st.sampled_from(choices)))
        elif kind == "meta_text":
            text = draw(st.text(max_size=40))
            meta_entry = (text_verdict(text.rstrip("\x00")), np.array(text))  # numpy drops trailing NULs
        elif kind == "meta_truncated":
            text = json.dumps(meta)
            meta_entry = ("refuse", np.array(text[: draw(st.integers(0, len(text) - 1))]))
        elif kind == "meta_non_object":
            meta_entry = ("refuse", np.array(json.dumps(draw(JSON_VALUES.filter(lambda v: not isinstance(v, dict))))))
        elif kind == "meta_object":
            arr = np.empty((), dtype=object)
            arr[()] = Payload()
            meta_entry = ("refuse", arr)
    entries: dict[str, np.ndarray] = {}
    array_verdict = arrays_verdict(arrays, sizes)
    if meta_entry[0] == "json":
        entries["metadata"] = np.array(json.dumps(meta))
        verdict, expected_meta = worse(array_verdict, meta_verdict(meta, sizes)), meta
    else:
        if meta_entry[1] is not None:
            entries["metadata"] = meta_entry[1]
        verdict, expected_meta = worse(array_verdict, meta_entry[0]), None
    entries.update(arrays)
    writer = draw(st.sampled_from(["savez", "savez_compressed"]))
    expected_theta = flat(arrays, n_layers) if verdict != "refuse" else None
    return entries, writer, verdict, expected_theta, expected_meta


def check_npz_case(case) -> None:
    entries, writer, verdict, theta, meta = case
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "model.npz"
        with open(path, "wb") as f:
            getattr(np, writer)(f, **entries)  # np.savez pickles object arrays (allow_pickle=True)
        try:
            check_weights(path, verdict, theta=theta, meta=meta)
        finally:
            UNPICKLED.clear()


@pytest.mark.parametrize("corruption", CORRUPTIONS)
@settings(FUZZ, max_examples=8)
@given(data=st.data())
def test_weights_hand_built_npz_one_corruption(corruption, data):
    """np.savez archives of a small model with one corruption of the given kind: NaN/inf or
    float32-overflowing weights, another float type (fine) or a non-float one, a pickled object array
    (refused, never unpickled), a wrong shape, a missing, extra or renamed array; metadata with a key
    set to a random JSON value or removed, or missing, not a string, not JSON, not an object, pickled.
    Loaded (with exactly its weights and metadata) or refused, as the corruption says."""
    check_npz_case(data.draw(npz_case(st.just([corruption]))))


@settings(FUZZ, max_examples=60)
@given(data=st.data())
def test_weights_hand_built_npz_mixed_corruptions(data):
    """The same with none or up to four corruptions of any kinds together."""
    check_npz_case(data.draw(npz_case(st.lists(st.sampled_from(CORRUPTIONS), max_size=4))))


# ------------------------------------------ zips with damaged .npy members (valid CRCs)

HUGE_SHAPE = "{'descr': '<f8', 'fortran_order': False, 'shape': (72057594037927936,), }"  # 2**56 items: 512 PiB
OVERFLOW_SHAPE = "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000000000000000000000000,), }"
NPY_HEADERS = st.sampled_from([
    "{'descr': '<f4', 'fortran_order': False, 'shape': (4, 3), }",
    "{'descr': '<f4', 'fortran_order': True, 'shape': (4, 3), }",
    "{'descr': '>f4', 'fortran_order': False, 'shape': (4, 3), }",
    "{'descr': '<f8', 'fortran_order': False, 'shape': (12,), }",
    "{'descr': '<f4', 'fortran_order': False, 'shape': (-1, 3), }",
    "{'descr': '<f4', 'fortran_order': False, 'shape': (4, 3, 0), }",
    "{'descr': '|O', 'fortran_order': False, 'shape': (4, 3), }",
    "{'descr': '<U4', 'fortran_order': False, 'shape': (), }",
    "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (4, 3), }",
    "{'descr': '<f4', 'fortran_order': 0, 'shape': [4, 3], }",
    "{'descr': '<f4', 'shape': (4, 3), }",
    HUGE_SHAPE,
    OVERFLOW_SHAPE,
    "{'descr': '<U1', 'fortran_order': False, 'shape': (), }",
    "{[]: 0}",
    "{'descr': '<f4', 'fortran_order': False, 'shape': (4, 3)",
    "{}",
    "[]",
    "",
])


def npy_with_header(header: str, body: bytes = b"", version: int = 1) -> bytes:
    text = header.encode("latin1")
    size_field = 2 if version == 1 else 4
    pad = -(6 + 2 + size_field + len(text) + 1) % 64
    text += b" " * pad + b"\n"
    return b"\x93NUMPY" + bytes([version, 0]) + struct.pack("<H" if version == 1 else "<I", len(text)) + text + body


@st.composite
def damaged_member(draw, good: bytes) -> bytes:
    kind = draw(st.sampled_from(["mutated-header", "mutated", "header", "random-header", "random"]))
    if kind == "mutated-header":
        header_len = 10 + struct.unpack("<H", good[8:10])[0]
        return draw(mutated(good, hot=(0,), hot_span=header_len))
    if kind == "mutated":
        return draw(mutated(good))
    if kind == "header":
        body = good[128:] if draw(st.booleans()) else draw(st.binary(max_size=64))
        return npy_with_header(draw(NPY_HEADERS), body, version=draw(st.sampled_from([1, 2, 3])))
    if kind == "random-header":
        return npy_with_header(draw(st.text(st.characters(max_codepoint=255), max_size=60)), draw(st.binary(max_size=64)))
    return draw(st.binary(max_size=64).map(lambda b: b"\x93NUMPY" + b if b[:1] > b"\x80" else b))


@FUZZ
@given(
    compression=st.sampled_from([zipfile.ZIP_STORED] * 2 + [zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA]),
    target=st.sampled_from(["metadata.npy", "W1.npy", "b1.npy", "W2.npy"]),
    data=st.data(),
)
def test_weights_zip_with_damaged_npy_member(compression, target, data):
    """A zip whose CRCs are all right but one .npy member (metadata or a layer) is damaged: its
    header mutated, replaced by a random or unusual one, or the member replaced by random bytes."""
    sizes = (4, 3, 2)
    arrays = model_arrays(sizes, seed=1)
    meta = {"format": "dtrain-mlp", "format_version": 1, "layer_sizes": list(sizes), "activation": "relu", "input_scale": 0.5}
    members = {"metadata.npy": npy(np.array(json.dumps(meta)))} | {f"{n}.npy": npy(a) for n, a in arrays.items()}
    members[target] = data.draw(damaged_member(members[target]))
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "model.npz"
        path.write_bytes(zip_of(members, compression))
        check_weights(path, "either")


# ===================================================== loader bug reproducers (fixed)


def _zip_member_replaced(method: int, payload: bytes, filler: int) -> bytes:
    """A one-member zip (metadata.npy, compressed with `method`) whose compressed bytes are overwritten."""
    data = bytearray(zip_of({"metadata.npy": payload}, method))
    start = 30 + len("metadata.npy")
    size = struct.unpack("<I", data[18:22])[0]
    data[start : start + size] = bytes([filler]) * size
    return bytes(data)


def _lzma_member_corrupt() -> bytes:
    data = bytearray(zip_of({"metadata.npy": b"\x93NUMPY" + bytes(range(256)) * 4}, zipfile.ZIP_LZMA))
    data[44] ^= 0x01  # first byte of the LZMA properties: "Invalid or unsupported options"
    return bytes(data)


def _npz(**entries) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **entries)
    return buf.getvalue()


_UCS4 = npy_with_header("{'descr': '<U1', 'fortran_order': False, 'shape': (), }", b"\xff\xff\xff\xff")
_ACTIVATION_LIST = {"format": "dtrain-mlp", "format_version": 1, "layer_sizes": [1, 1], "activation": []}

# name -> (file content, a phrase the refusal must contain)
WEIGHTS_REPRODUCERS = {
    "npz-member-not-npy": (zip_of({"metadata.npy": b"hello"}), "entry 'metadata.npy' is not a .npy array"),
    "meta-activation-unhashable": (
        _npz(metadata=np.array(json.dumps(_ACTIVATION_LIST))),
        "metadata 'activation' must be one of ['relu', 'sigmoid'], got []",
    ),
    "npy-header-unhashable-key": (zip_of({"metadata.npy": npy_with_header("{[]: 0}")}), "'metadata': bad .npy header"),
    "npy-header-tokenize": (zip_of({"metadata.npy": npy_with_header("(")}), "'metadata': bad .npy header"),
    "npy-header-huge-shape": (
        zip_of({"metadata.npy": npy_with_header(HUGE_SHAPE)}),
        "'metadata': its .npy header declares shape (72057594037927936,) of float64",
    ),
    "npy-header-overflow-shape": (
        zip_of({"metadata.npy": npy_with_header(OVERFLOW_SHAPE)}),
        "its .npy header declares shape (1000000000000000000000000000000,)",
    ),
    "npy-metadata-invalid-ucs4": (zip_of({"metadata.npy": _UCS4}), "'metadata' is not valid text"),
    "zip-corrupt-deflate": (
        _zip_member_replaced(zipfile.ZIP_DEFLATED, b"\x93NUMPY" + b"x" * 200, 0xFF),
        "unreadable array 'metadata'",
    ),
    "zip-corrupt-lzma": (_lzma_member_corrupt(), "unreadable array 'metadata'"),
}


@pytest.mark.parametrize("name", ["idx-empty-huge-sides", "idx-empty-huge-sides-dataset", *WEIGHTS_REPRODUCERS])
def test_loader_bug_reproducers(name, tmp_path):
    """Minimal inputs on which a loader used to raise something other than its documented error
    (a ValueError, AttributeError, TypeError, TokenError, MemoryError, OverflowError, SystemError,
    zlib.error or LZMAError): each is now refused with IdxError or WeightsError, in one line that
    names the file and says what is wrong."""
    if name == "idx-empty-huge-sides":
        # 16 bytes: images magic, 0 images of 4294967295 x 4294967295 pixels.
        content = idx(IMAGES_MAGIC, (0, 2**32 - 1, 2**32 - 1))
        assert idx_verdict(content, IMAGES_MAGIC) is None
        with pytest.raises(IdxError) as info:
            parse_idx(content, Path("huge"), IMAGES_MAGIC)
        phrases = ["huge: ", "bad dimensions 0x4294967295x4294967295", "too large"]
    elif name == "idx-empty-huge-sides-dataset":
        write_dataset(tmp_path / "set", gz=False, stem=TRAIN_IMAGES, raw=idx(IMAGES_MAGIC, (0, 2**32 - 1, 2**32 - 1)))
        with pytest.raises(IdxError) as info:
            load_dataset(tmp_path / "set")
        phrases = [display_path(tmp_path / "set" / TRAIN_IMAGES) + ": ", "bad dimensions"]
    else:
        path = tmp_path / "model.npz"
        content, phrase = WEIGHTS_REPRODUCERS[name]
        path.write_bytes(content)
        with pytest.raises(WeightsError):
            load_model(path)
        with pytest.raises(WeightsError) as info:
            read_weights(path)
        phrases = [f"{path}: ", phrase]
    assert isinstance(info.value, UserError)
    msg = str(info.value)
    assert "\n" not in msg, msg
    assert msg.startswith(phrases[0]), msg
    for phrase in phrases[1:]:
        assert phrase in msg, msg


def test_empty_images_of_representable_size_still_parse():
    """The "bad dimensions" refusal is only for shapes numpy cannot hold: 0 images of 2**20 x 2**20
    pixels parse to an empty array (load_dataset then says the file holds no images)."""
    out = check_parse(idx(IMAGES_MAGIC, (0, 2**20, 2**20)), IMAGES_MAGIC)
    assert out is not None and out.shape == (0, 2**20, 2**20)


def _small_model(tmp_path: Path, meta_changes: dict | None = None, **arrays: np.ndarray) -> Path:
    sizes = (4, 3, 2)
    entries = model_arrays(sizes, seed=5) | arrays
    meta = {"format": "dtrain-mlp", "format_version": 1, "layer_sizes": list(sizes), "activation": "relu"}
    path = tmp_path / "model.npz"
    path.write_bytes(_npz(metadata=np.array(json.dumps(meta | (meta_changes or {}))), **entries))
    return path


@pytest.mark.parametrize("value", [3e38, -2e6, 1.5e6])
def test_huge_finite_weights_are_refused(tmp_path, value):
    """Finite float32 weights far beyond any trained model's (they made predictions NaN) are refused."""
    W2 = model_arrays((4, 3, 2), seed=5)["W2"]
    W2[1, 0] = value
    path = _small_model(tmp_path, W2=W2)
    with pytest.raises(WeightsError) as info:
        read_weights(path)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"{path}: array 'W2'") and f"{abs(value):.3g}" in msg, msg
    with pytest.raises(WeightsError):
        load_model(path)


def test_weights_at_the_bound_load_and_predict(tmp_path):
    W1 = model_arrays((4, 3, 2), seed=5)["W1"]
    W1[0, 0] = -MAX_WEIGHT
    path = _small_model(tmp_path, W1=W1)
    assert check_weights(path, "accept")


@pytest.mark.parametrize("scale", [1, 2, 1.0, 1 / 255, 10**6])
def test_input_scale_may_be_an_int_or_a_float(tmp_path, scale):
    path = _small_model(tmp_path, {"input_scale": scale})
    assert check_weights(path, "accept")
    assert load_model(path).input_scale == scale


@pytest.mark.parametrize("scale", [True, 0, -1, 1e6 + 1, 3.4028235677973366e38, 10**400, "1"])
def test_input_scale_not_a_positive_number_up_to_the_bound_is_refused(tmp_path, scale):
    """Also a huge but finite scale: 3.4028235677973366e38 is inf as float32, and a black image
    (0 * inf) then got NaN probabilities."""
    path = _small_model(tmp_path, {"input_scale": scale})
    with pytest.raises(WeightsError) as info:
        read_weights(path)
    assert str(info.value) == f"{path}: metadata 'input_scale' must be a positive number, at most 1,000,000"


@pytest.mark.parametrize("version", [1, 2])
def test_npy_members_of_header_version_1_and_2_load(tmp_path, version):
    """read_weights parses each member's .npy header itself (to check its size first): versions
    1.0 and 2.0 (what np.save writes) load to the same weights."""
    sizes = (4, 3, 2)
    arrays = model_arrays(sizes, seed=1)
    meta = {"format": "dtrain-mlp", "format_version": 1, "layer_sizes": list(sizes), "activation": "relu"}
    members = {"metadata.npy": npy(np.array(json.dumps(meta)))}
    for name, arr in arrays.items():
        header = f"{{'descr': '<f4', 'fortran_order': False, 'shape': {arr.shape}, }}"
        members[f"{name}.npy"] = npy_with_header(header, arr.astype("<f4").tobytes(), version=version)
    path = tmp_path / "model.npz"
    path.write_bytes(zip_of(members, zipfile.ZIP_DEFLATED))
    assert check_weights(path, "accept", theta=flat(arrays, len(sizes) - 1), meta=meta)


@pytest.mark.parametrize(
    "member, phrase",
    [
        # 2**40 float32 weights declared by a 200-byte file: refused before allocating 4 TiB
        (npy_with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (1048576, 1048576), }"), "declares shape"),
        (npy_with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (4, 3), }", b"\0" * 47), "holds only 47 bytes"),
        (npy_with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (-4, -3), }"), "bad shape (-4, -3)"),
        (npy_with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (4, 3), }", b"\0" * 48, version=3), "version 3.0"),
        (b"\x93NUMPY\x01\x00\x76", "unreadable array 'W1': EOF"),
        (b"\x93NUMPY\x01", "entry 'W1.npy' is not a .npy array"),
        (b"", "entry 'W1.npy' is not a .npy array"),
    ],
    ids=["huge-shape", "short-data", "negative-shape", "version-3", "truncated-header", "truncated-magic", "empty"],
)
def test_damaged_layer_member_is_refused_by_name(tmp_path, member, phrase):
    sizes = (4, 3, 2)
    meta = {"format": "dtrain-mlp", "format_version": 1, "layer_sizes": list(sizes), "activation": "relu"}
    members = {"metadata.npy": npy(np.array(json.dumps(meta)))}
    members |= {f"{n}.npy": npy(a) for n, a in model_arrays(sizes, seed=1).items()}
    members["W1.npy"] = member
    path = tmp_path / "model.npz"
    path.write_bytes(zip_of(members))
    with pytest.raises(WeightsError) as info:
        read_weights(path)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"{path}: ") and phrase in msg, msg


def test_known_bug_signatures_are_precise(monkeypatch):
    """known_bug matches only the listed (type, place) pairs: documented errors and other exceptions
    raised elsewhere are not tolerated by the fuzz tests. Checked with a sample entry, as none is open."""
    monkeypatch.setitem(KNOWN_BUGS, "sample-zlib", (zlib.error, ("zipfile.py",)))
    for e in (IdxError("x"), WeightsError("x"), ValueError("x"), KeyError("x"), zipfile.BadZipFile("x"), EOFError()):
        try:
            raise e
        except Exception as caught:
            assert known_bug(caught) is None, caught
    try:
        np.lib.format.read_magic(io.BytesIO(b"\x93NUMPY"))  # a ValueError from numpy
    except ValueError as caught:
        assert known_bug(caught) is None
    try:
        zlib.decompress(b"\xff" * 8)  # the sample's type, but raised here, not in zipfile.py
    except zlib.error as caught:
        assert known_bug(caught) is None
    with zipfile.ZipFile(io.BytesIO(WEIGHTS_REPRODUCERS["zip-corrupt-deflate"][0])) as zf:
        with pytest.raises(zlib.error) as info:
            zf.read("metadata.npy")  # the sample's type, raised in zipfile.py
    assert known_bug(info.value) == "sample-zlib"
    with pytest.raises(zlib.error):
        tolerate_known_bug(zlib.error("raised here"))
