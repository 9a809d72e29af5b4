"""Strict safetensors reader/writer plus bf16 / FP8-e4m3fn codecs, numpy only.

File layout (huggingface/safetensors README, "Format"):
    [0:8)      u64 little-endian N = byte length of the JSON header
    [8:8+N)    UTF-8 JSON object {name: {"dtype", "shape", "data_offsets": [begin, end)}, "__metadata__": {str: str}}
               (may be right-padded with spaces)
    [8+N:EOF)  byte buffer; offsets are relative to its start, row-major little-endian data.

The reader is deliberately strict (it is the oracle the C++ loader is compared with): every defect raises
ValueError whose message names the file and, where relevant, the tensor.

Storage representation: BF16 tensors are handled as uint16 bit patterns and F8_E4M3 tensors as uint8 codes;
`decode()` turns any stored tensor into float32 and `encode()` does the reverse with round-to-nearest-even.
"""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

# Storage dtype of each safetensors dtype string.  BF16/F8 use unsigned ints of the same width (numpy has no
# native type for them); decode() converts to float32.
STORAGE_DTYPES: Dict[str, np.dtype] = {
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),
    "F8_E4M3": np.dtype("u1"),
    "I32": np.dtype("<i4"),
    "I64": np.dtype("<i8"),
}
FLOAT_DTYPES = ("F32", "F16", "BF16", "F8_E4M3")

# Same limit as the Rust implementation (safetensors/src/tensor.rs MAX_HEADER_SIZE).
MAX_HEADER_SIZE = 100_000_000

FP8_E4M3_MAX = 448.0
INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"


# ----------------------------------------------------------------------------------------------------------------
# bf16 codec
# ----------------------------------------------------------------------------------------------------------------

def bf16_to_f32(bits: np.ndarray) -> np.ndarray:
    """uint16 bf16 bit patterns -> float32 (exact: bf16 is the top half of an f32)."""
    bits = np.asarray(bits, dtype=np.uint16)
    return (bits.astype(np.uint32) << 16).view(np.float32)


def f32_to_bf16(x: np.ndarray) -> np.ndarray:
    """float -> uint16 bf16 bit patterns, round to nearest, ties to even; NaN stays a (quiet) NaN.

    Inputs wider than f32 are first rounded to f32 (the usual torch behaviour for .to(bfloat16) from f32)."""
    x = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
    u = x.view(np.uint32)
    # Adding 0x7FFF + lsb and truncating implements RNE; overflow rolls correctly into the exponent (-> inf).
    lsb = (u >> 16) & 1
    rounded = ((u + np.uint32(0x7FFF) + lsb) >> 16).astype(np.uint16)
    nan = np.isnan(x)
    if nan.any():
        # Truncation could turn a NaN with only low mantissa bits into inf; force the quiet bit instead.
        rounded[nan] = ((u[nan] >> 16) | 0x0040).astype(np.uint16)
    return rounded


# ----------------------------------------------------------------------------------------------------------------
# FP8 e4m3fn codec (1 sign, 4 exponent bits with bias 7, 3 mantissa bits; no infinities; NaN = S.1111.111)
# ----------------------------------------------------------------------------------------------------------------

def _fp8_e4m3_table() -> np.ndarray:
    codes = np.arange(256)
    sign = np.where(codes & 0x80, -1.0, 1.0)
    exp = (codes >> 3) & 0xF
    man = codes & 0x7
    # Subnormals (exp == 0): man/8 * 2^(1-7); normals: (1 + man/8) * 2^(exp-7).
    mag = np.where(exp == 0, man / 8.0 * 2.0 ** -6, (1.0 + man / 8.0) * 2.0 ** (exp - 7.0))
    val = sign * mag
    val[(exp == 15) & (man == 7)] = np.nan
    return val.astype(np.float32)


FP8_E4M3_TABLE = _fp8_e4m3_table()
# Non-negative finite values, code 0..126, strictly increasing: the search table for encoding.
_FP8_POS = FP8_E4M3_TABLE[:127].astype(np.float64)


def fp8_e4m3_to_f32(codes: np.ndarray) -> np.ndarray:
    """uint8 e4m3fn codes -> float32 (exact)."""
    return FP8_E4M3_TABLE[np.asarray(codes, dtype=np.uint8)]


def f32_to_fp8_e4m3(x: np.ndarray) -> np.ndarray:
    """float -> uint8 e4m3fn codes: round to nearest, ties to even; |x| > 448 saturates to ±448 (e4m3fn has no
    infinity, and saturation is what a weight quantizer wants); NaN -> 0x7F/0xFF."""
    x = np.asarray(x, dtype=np.float32)
    flat = x.reshape(-1).astype(np.float64)  # f32 -> f64 is exact, so all differences below are exact too
    a = np.minimum(np.abs(flat), FP8_E4M3_MAX)
    nan = np.isnan(flat)
    a[nan] = 0.0
    hi = np.searchsorted(_FP8_POS, a, side="left")  # first code whose value >= a; a <= 448 so hi <= 126
    lo = np.maximum(hi - 1, 0)
    d_lo = a - _FP8_POS[lo]
    d_hi = _FP8_POS[hi] - a
    # Neighbouring codes differ by one in the mantissa LSB, so "ties to even" = pick the even code.
    pick_hi = (d_hi < d_lo) | ((d_hi == d_lo) & (hi % 2 == 0))
    code = np.where(pick_hi, hi, lo).astype(np.uint8)
    code |= np.where(np.signbit(flat), 0x80, 0).astype(np.uint8)
    code[nan] = 0x7F | (code[nan] & 0x80)
    return code.reshape(x.shape)


# ----------------------------------------------------------------------------------------------------------------
# generic encode / decode between float arrays and stored representations
# ----------------------------------------------------------------------------------------------------------------

def decode(raw: np.ndarray, dtype: str) -> np.ndarray:
    """Stored representation -> float32 (float dtypes) or the integer array itself (I32/I64)."""
    if dtype == "F32":
        return np.asarray(raw, dtype=np.float32)
    if dtype == "F16":
        return np.asarray(raw, dtype=np.float16).astype(np.float32)
    if dtype == "BF16":
        return bf16_to_f32(raw)
    if dtype == "F8_E4M3":
        return fp8_e4m3_to_f32(raw)
    if dtype in ("I32", "I64"):
        return np.asarray(raw, dtype=STORAGE_DTYPES[dtype].newbyteorder("="))
    raise ValueError(f"unsupported safetensors dtype {dtype!r}")


def encode(x: np.ndarray, dtype: str) -> np.ndarray:
    """Array -> stored representation for `dtype`.

    Arrays that already have the storage dtype of BF16 (uint16) or F8_E4M3 (uint8) are taken as raw bits, so
    callers can pass pre-encoded data; anything else is treated as numbers and rounded (RNE)."""
    if dtype not in STORAGE_DTYPES:
        raise ValueError(f"unsupported safetensors dtype {dtype!r}")
    x = np.asarray(x)
    if dtype == "BF16":
        return x if x.dtype == np.uint16 else f32_to_bf16(x)
    if dtype == "F8_E4M3":
        return x if x.dtype == np.uint8 else f32_to_fp8_e4m3(x)
    return x.astype(STORAGE_DTYPES[dtype], copy=False)


def default_dtype_for(x: np.ndarray) -> str:
    """safetensors dtype used when the caller gives none (float64 is narrowed to F32)."""
    kind = np.asarray(x).dtype
    if kind in (np.float32, np.float64):
        return "F32"
    if kind == np.float16:
        return "F16"
    if kind == np.int32:
        return "I32"
    if kind == np.int64:
        return "I64"
    raise ValueError(f"no default safetensors dtype for numpy dtype {kind} (pass dtypes=...)")


# ----------------------------------------------------------------------------------------------------------------
# reader
# ----------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str
    shape: Tuple[int, ...]
    begin: int  # absolute file offset of the first byte
    end: int    # absolute file offset one past the last byte

    @property
    def nbytes(self) -> int:
        return self.end - self.begin


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _reject_duplicates(pairs):
    d = {}
    for k, v in pairs:
        if k in d:
            raise ValueError(f"duplicate key {k!r}")
        d[k] = v
    return d


class SafetensorsFile:
    """One .safetensors file, validated on open; tensor data is memory-mapped lazily (read-only)."""

    def __init__(self, path: str):
        self.path = os.fspath(path)
        self.tensors: Dict[str, TensorInfo] = {}
        self.metadata: Dict[str, str] = {}
        self._mm: Optional[np.memmap] = None
        self._parse()

    def _err(self, msg: str) -> ValueError:
        return ValueError(f"{self.path}: {msg}")

    def _parse(self) -> None:
        try:
            size = os.path.getsize(self.path)
            with open(self.path, "rb") as f:
                head = f.read(8)
                if len(head) < 8:
                    raise self._err(f"file is {size} bytes, too short for the 8-byte header length")
                (n,) = struct.unpack("<Q", head)
                if n > MAX_HEADER_SIZE:
                    raise self._err(f"header length {n} exceeds the limit {MAX_HEADER_SIZE}")
                if 8 + n > size:
                    raise self._err(f"header length {n} runs past the end of the file ({size} bytes)")
                raw_header = f.read(n)
        except OSError as e:
            raise ValueError(f"{self.path}: cannot read: {e.strerror or e}") from e
        if n < 2 or raw_header[:1] != b"{":
            raise self._err("header is not a JSON object (must start with '{')")
        try:
            header = json.loads(raw_header.decode("utf-8"), object_pairs_hook=_reject_duplicates)
        except (UnicodeDecodeError, ValueError) as e:
            raise self._err(f"header is not valid UTF-8 JSON: {e}") from e
        if not isinstance(header, dict):
            raise self._err("header is not a JSON object")

        data_start = 8 + n
        buf_len = size - data_start
        spans = []
        for name, entry in header.items():
            if name == "__metadata__":
                if not isinstance(entry, dict) or not all(
                        isinstance(k, str) and isinstance(v, str) for k, v in entry.items()):
                    raise self._err("__metadata__ must be an object of string -> string")
                self.metadata = dict(entry)
                continue
            where = f"tensor {name!r}"
            if not isinstance(entry, dict):
                raise self._err(f"{where}: entry is not an object")
            extra = set(entry) - {"dtype", "shape", "data_offsets"}
            if extra or len(entry) != 3:
                raise self._err(f"{where}: entry must have exactly dtype, shape, data_offsets (got {sorted(entry)})")
            dtype, shape, offs = entry["dtype"], entry["shape"], entry["data_offsets"]
            if dtype not in STORAGE_DTYPES:
                raise self._err(f"{where}: unknown or unsupported dtype {dtype!r} "
                                f"(supported: {', '.join(STORAGE_DTYPES)})")
            if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
                raise self._err(f"{where}: shape must be a list of non-negative integers, got {shape!r}")
            if (not isinstance(offs, list) or len(offs) != 2 or not all(_is_int(o) for o in offs)
                    or offs[0] < 0 or offs[1] < offs[0]):
                raise self._err(f"{where}: data_offsets must be [begin, end] with 0 <= begin <= end, got {offs!r}")
            want = math.prod(shape) * STORAGE_DTYPES[dtype].itemsize
            if offs[1] - offs[0] != want:
                raise self._err(f"{where}: byte range {offs} holds {offs[1] - offs[0]} bytes but dtype {dtype} "
                                f"shape {shape} needs {want}")
            if offs[1] > buf_len:
                raise self._err(f"{where}: byte range {offs} is past the end of the data buffer "
                                f"({buf_len} bytes; file truncated?)")
            info = TensorInfo(name, dtype, tuple(shape), data_start + offs[0], data_start + offs[1])
            self.tensors[name] = info
            if want:
                spans.append(info)
        spans.sort(key=lambda t: (t.begin, t.end))
        for a, b in zip(spans, spans[1:]):
            if b.begin < a.end:
                raise self._err(f"tensors {a.name!r} and {b.name!r} have overlapping byte ranges")

    # -- access ---------------------------------------------------------------------------------------------------
    def keys(self) -> List[str]:
        return list(self.tensors)

    def __contains__(self, name: str) -> bool:
        return name in self.tensors

    def info(self, name: str) -> TensorInfo:
        try:
            return self.tensors[name]
        except KeyError:
            raise KeyError(f"{self.path}: no tensor named {name!r}") from None

    def raw(self, name: str) -> np.ndarray:
        """Stored representation (read-only view onto the memory map; BF16 -> uint16, F8_E4M3 -> uint8)."""
        info = self.info(name)
        st = STORAGE_DTYPES[info.dtype]
        if info.nbytes == 0:
            return np.zeros(info.shape, dtype=st)
        if self._mm is None:
            self._mm = np.memmap(self.path, dtype=np.uint8, mode="r")
        return self._mm[info.begin:info.end].view(st).reshape(info.shape)

    def get(self, name: str) -> np.ndarray:
        """Decoded copy: float32 for float dtypes, native-endian ints for I32/I64."""
        info = self.info(name)
        return np.array(decode(self.raw(name), info.dtype), copy=True)

    def close(self) -> None:
        self._mm = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def read_safetensors(path: str) -> Dict[str, np.ndarray]:
    """Whole file -> {name: decoded array}."""
    f = SafetensorsFile(path)
    return {k: f.get(k) for k in f.keys()}


# ----------------------------------------------------------------------------------------------------------------
# checkpoint directories (single file or sharded with an index)
# ----------------------------------------------------------------------------------------------------------------

class Checkpoint:
    """Tensors of an HF checkpoint: a directory holding model.safetensors.index.json (sharded) or
    model.safetensors, or a path to one .safetensors file."""

    def __init__(self, path: str):
        path = os.fspath(path)
        self.path = path
        self.files: Dict[str, SafetensorsFile] = {}
        self.where: Dict[str, str] = {}  # tensor name -> file path
        if os.path.isfile(path):
            self._add_file(path)
            for k in self.files[path].keys():
                self.where[k] = path
            return
        if not os.path.isdir(path):
            raise ValueError(f"{path}: checkpoint directory or file does not exist")
        index = os.path.join(path, INDEX_FILE)
        single = os.path.join(path, SINGLE_FILE)
        if os.path.isfile(index):
            self._load_index(index)
        elif os.path.isfile(single):
            self._add_file(single)
            for k in self.files[single].keys():
                self.where[k] = single
        else:
            raise ValueError(f"{path}: neither {SINGLE_FILE} nor {INDEX_FILE} found")

    def _add_file(self, fp: str) -> SafetensorsFile:
        if fp not in self.files:
            self.files[fp] = SafetensorsFile(fp)
        return self.files[fp]

    def _load_index(self, index: str) -> None:
        try:
            with open(index, "r", encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError) as e:
            raise ValueError(f"{index}: cannot parse: {e}") from e
        wm = data.get("weight_map") if isinstance(data, dict) else None
        if not isinstance(wm, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in wm.items()):
            raise ValueError(f"{index}: must be an object with a string -> string 'weight_map'")
        base = os.path.dirname(index)
        for name, fname in wm.items():
            if os.path.isabs(fname) or ".." in fname.replace("\\", "/").split("/"):
                raise ValueError(f"{index}: tensor {name!r} maps to {fname!r}, outside the checkpoint directory")
            fp = os.path.join(base, fname)
            if not os.path.isfile(fp):
                raise ValueError(f"{index}: tensor {name!r} maps to missing file {fname!r}")
            sf = self._add_file(fp)
            if name not in sf:
                raise ValueError(f"{index}: tensor {name!r} is not in {fname!r}")
            self.where[name] = fp

    def keys(self) -> List[str]:
        return list(self.where)

    def __contains__(self, name: str) -> bool:
        return name in self.where

    def _file(self, name: str) -> SafetensorsFile:
        try:
            return self.files[self.where[name]]
        except KeyError:
            raise KeyError(f"{self.path}: no tensor named {name!r}") from None

    def info(self, name: str) -> TensorInfo:
        return self._file(name).info(name)

    def raw(self, name: str) -> np.ndarray:
        return self._file(name).raw(name)

    def get(self, name: str) -> np.ndarray:
        return self._file(name).get(name)


# ----------------------------------------------------------------------------------------------------------------
# writer
# ----------------------------------------------------------------------------------------------------------------

TensorSpec = Tuple[str, str, Tuple[int, ...]]  # (name, safetensors dtype, shape)


class SafetensorsWriter:
    """Streams tensors into one file: the header (all names/shapes) is written up front, then the data in the
    same order, one tensor at a time, so huge checkpoints never sit in memory at once."""

    def __init__(self, path: str, specs: Sequence[TensorSpec], metadata: Optional[Mapping[str, str]] = None):
        self.path = os.fspath(path)
        self.specs = [(n, d, tuple(int(x) for x in s)) for n, d, s in specs]
        header: Dict[str, object] = {}
        if metadata:
            header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
        off = 0
        for name, dtype, shape in self.specs:
            if dtype not in STORAGE_DTYPES:
                raise ValueError(f"{self.path}: tensor {name!r}: unsupported dtype {dtype!r}")
            if name in header or name == "__metadata__":
                raise ValueError(f"{self.path}: duplicate tensor name {name!r}")
            nb = math.prod(shape) * STORAGE_DTYPES[dtype].itemsize
            header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [off, off + nb]}
            off += nb
        hb = json.dumps(header, separators=(",", ":")).encode("utf-8")
        hb += b" " * (-len(hb) % 8)  # pad like the Rust writer so the data buffer starts 8-aligned
        self._f = open(self.path, "wb")
        self._f.write(struct.pack("<Q", len(hb)))
        self._f.write(hb)
        self._next = 0

    def write(self, name: str, x: np.ndarray) -> None:
        if self._next >= len(self.specs):
            raise ValueError(f"{self.path}: unexpected extra tensor {name!r}")
        want_name, dtype, shape = self.specs[self._next]
        if name != want_name:
            raise ValueError(f"{self.path}: expected tensor {want_name!r} next, got {name!r}")
        data = encode(x, dtype)
        if tuple(data.shape) != shape:
            raise ValueError(f"{self.path}: tensor {name!r} has shape {tuple(data.shape)}, declared {shape}")
        self._f.write(np.ascontiguousarray(data, dtype=STORAGE_DTYPES[dtype]).tobytes())
        self._next += 1

    def close(self) -> None:
        if self._f is None:
            return
        f, self._f = self._f, None
        f.close()
        if self._next != len(self.specs):
            missing = self.specs[self._next][0]
            raise ValueError(f"{self.path}: closed before tensor {missing!r} was written")

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *rest):
        if exc_type is not None and self._f is not None:
            self._f.close()
            self._f = None
            return False
        self.close()
        return False


def write_safetensors(path: str, tensors: Mapping[str, np.ndarray], dtypes: Optional[Mapping[str, str]] = None,
                      metadata: Optional[Mapping[str, str]] = None) -> None:
    """Write {name: array} to one file.  dtypes[name] picks the stored dtype (float data is rounded RNE;
    uint16/uint8 arrays for BF16/F8_E4M3 are raw bits); otherwise it follows the numpy dtype."""
    dtypes = dict(dtypes or {})
    specs = []
    for name, x in tensors.items():
        dt = dtypes.get(name) or default_dtype_for(x)
        specs.append((name, dt, tuple(np.shape(x))))
    with SafetensorsWriter(path, specs, metadata if metadata is not None else {"format": "pt"}) as w:
        for name, x in tensors.items():
            w.write(name, x)


def shard_file_names(n: int) -> List[str]:
    if n == 1:
        return [SINGLE_FILE]
    return [f"model-{i + 1:05d}-of-{n:05d}.safetensors" for i in range(n)]


def write_checkpoint_tensors(out_dir: str, specs: Sequence[TensorSpec], produce: Callable[[str], np.ndarray],
                             shards: int = 1, metadata: Optional[Mapping[str, str]] = None) -> List[str]:
    """Write tensors (produced one at a time by `produce(name)`) into out_dir as model.safetensors (shards == 1)
    or as `shards` files plus model.safetensors.index.json.  Tensors keep their order; shards are contiguous runs
    balanced by bytes.  Returns the file names written."""
    if shards < 1:
        raise ValueError(f"shards must be >= 1, got {shards}")
    specs = list(specs)
    if shards > max(1, len(specs)):
        raise ValueError(f"cannot split {len(specs)} tensors into {shards} shards")
    os.makedirs(out_dir, exist_ok=True)
    meta = dict(metadata) if metadata is not None else {"format": "pt"}
    sizes = [math.prod(s) * STORAGE_DTYPES[d].itemsize for _, d, s in specs]
    total = sum(sizes)
    # Greedy contiguous split: start a new shard when the running size passes the next 1/shards boundary,
    # keeping at least one tensor for every remaining shard.
    groups: List[List[int]] = [[] for _ in range(shards)]
    acc, g = 0, 0
    for i, sz in enumerate(sizes):
        remaining_tensors = len(specs) - i
        remaining_groups = shards - g - 1
        if groups[g] and g < shards - 1 and (acc >= total * (g + 1) / shards or remaining_tensors <= remaining_groups):
            g += 1
        groups[g].append(i)
        acc += sz
    names = shard_file_names(shards)
    weight_map: Dict[str, str] = {}
    for fname, idxs in zip(names, groups):
        part = [specs[i] for i in idxs]
        with SafetensorsWriter(os.path.join(out_dir, fname), part, meta) as w:
            for name, _, _ in part:
                w.write(name, produce(name))
                weight_map[name] = fname
    index_path = os.path.join(out_dir, INDEX_FILE)
    if shards > 1:
        with open(index_path, "w", encoding="utf-8") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
            f.write("\n")
    elif os.path.exists(index_path):
        os.remove(index_path)  # a stale index would shadow the single file
    return names
