"""safetensors reader/writer, bf16 and FP8 codecs, sharded checkpoints, strict-reader errors."""

import json
import os
import struct
from fractions import Fraction

import numpy as np
import pytest

from dsv3 import safetensors_io as st


# ------------------------------------------------------------------------------------------------ FP8 e4m3fn ----

def fp8_independent(code):
    """e4m3fn value of `code` from the bit fields, exactly, with Fraction (independent of the module's table):
    value = (-1)^s * significand * 2^(e_eff - 7 - 3), significand = m (+8 if normal), e_eff = max(e, 1)."""
    s, e, m = code >> 7, (code >> 3) & 0xF, code & 7
    if e == 0xF and m == 7:
        return None  # NaN
    sig = m + (8 if e else 0)
    val = Fraction(sig) * Fraction(2) ** (max(e, 1) - 10)
    return -val if s else val


def test_fp8_decode_all_256_codes():
    dec = st.fp8_e4m3_to_f32(np.arange(256, dtype=np.uint8))
    for c in range(256):
        want = fp8_independent(c)
        if want is None:
            assert np.isnan(dec[c]), hex(c)
        else:
            assert Fraction(float(dec[c])) == want, hex(c)
            assert np.signbit(dec[c]) == bool(c & 0x80), hex(c)
    # anchors from the OCP FP8 spec
    assert dec[0x7E] == 448.0 and dec[0xFE] == -448.0
    assert dec[0x01] == 2.0 ** -9 and dec[0x08] == 2.0 ** -6 and dec[0x38] == 1.0
    assert np.isnan(dec[0x7F]) and np.isnan(dec[0xFF])
    assert np.count_nonzero(np.isnan(dec)) == 2  # no infinities, exactly two NaN codes


def test_fp8_encode_roundtrip_every_code():
    codes = np.array([c for c in range(256) if c not in (0x7F, 0xFF)], dtype=np.uint8)
    assert np.array_equal(st.f32_to_fp8_e4m3(st.fp8_e4m3_to_f32(codes)), codes)


def test_fp8_encode_ties_to_even_saturation_nan():
    vals = st.fp8_e4m3_to_f32(np.arange(127, dtype=np.uint8)).astype(np.float64)
    mids = ((vals[:-1] + vals[1:]) / 2).astype(np.float32)  # exact in f32
    assert np.array_equal(mids.astype(np.float64), (vals[:-1] + vals[1:]) / 2)
    got = st.f32_to_fp8_e4m3(mids).astype(int)
    lo = np.arange(126)
    want = np.where(lo % 2 == 0, lo, lo + 1)
    assert np.array_equal(got, want)
    assert np.array_equal(st.f32_to_fp8_e4m3(-mids).astype(int), want | 0x80)
    sat = st.f32_to_fp8_e4m3(np.array([449, 464, 480, 1e6, np.inf, -500, -np.inf], dtype=np.float32))
    assert list(sat) == [0x7E, 0x7E, 0x7E, 0x7E, 0x7E, 0xFE, 0xFE]
    nan = st.f32_to_fp8_e4m3(np.array([np.nan, -np.nan], dtype=np.float32))
    assert all((c & 0x7F) == 0x7F for c in nan)
    # half the smallest subnormal ties to +0; just above it rounds up
    tiny = st.f32_to_fp8_e4m3(np.array([2.0 ** -10, 2.0 ** -10 * 1.0001, -0.0], dtype=np.float32))
    assert list(tiny) == [0x00, 0x01, 0x80]


def test_fp8_encode_matches_brute_force_nearest():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.standard_normal(3000) * 10.0 ** rng.uniform(-4, 2.7, 3000),
                        rng.uniform(-460, 460, 1000)]).astype(np.float32)
    pos = st.fp8_e4m3_to_f32(np.arange(127, dtype=np.uint8)).astype(np.float64)
    a = np.minimum(np.abs(x.astype(np.float64)), 448.0)
    d = np.abs(a[:, None] - pos[None, :])
    best = d.min(axis=1, keepdims=True)
    cand = d == best
    # among equally near codes take the even one
    even = cand & (np.arange(127)[None, :] % 2 == 0)
    pick = np.where(even.any(1), even.argmax(1), cand.argmax(1))
    want = pick | np.where(np.signbit(x), 0x80, 0)
    assert np.array_equal(st.f32_to_fp8_e4m3(x).astype(int), want)


# ------------------------------------------------------------------------------------------------ bf16 ----------

def test_bf16_decode_all_patterns_and_roundtrip():
    bits = np.arange(65536, dtype=np.uint32).astype(np.uint16)
    f = st.bf16_to_f32(bits)
    assert np.array_equal(f.view(np.uint32) >> 16, bits.astype(np.uint32))
    back = st.f32_to_bf16(f)
    finite = ~np.isnan(f)
    assert np.array_equal(back[finite], bits[finite])
    assert np.all(np.isnan(st.bf16_to_f32(back[~finite])))


def test_bf16_round_to_nearest_even():
    one = np.float32(1.0)
    x = np.array([1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -8 + 2 ** -20, -(1 + 2 ** -8),
                  3.4028235e38, np.inf, -np.inf, 0.0, -0.0], dtype=np.float32)
    got = st.bf16_to_f32(st.f32_to_bf16(x))
    want = np.array([1.0, 1 + 2 ** -6, 1 + 2 ** -7, -1.0, np.inf, np.inf, -np.inf, 0.0, -0.0], dtype=np.float32)
    assert np.array_equal(got, want)
    assert np.signbit(got[-1])
    assert one == got[0]
    # a NaN whose payload sits only in the low 16 bits must stay NaN
    nan = np.array([0x7F800001], dtype=np.uint32).view(np.float32)
    assert np.isnan(st.bf16_to_f32(st.f32_to_bf16(nan)))[0]


def test_bf16_random_vs_float64_nearest():
    rng = np.random.default_rng(1)
    x = (rng.standard_normal(20000) * 10.0 ** rng.uniform(-30, 30, 20000)).astype(np.float32)
    got = st.bf16_to_f32(st.f32_to_bf16(x)).astype(np.float64)
    lo = ((x.view(np.uint32) >> 16) << 16).view(np.float32).astype(np.float64)  # truncation toward zero
    hi = (((x.view(np.uint32) >> 16) + 1) << 16).view(np.float32).astype(np.float64)
    xd = x.astype(np.float64)
    dlo, dhi = np.abs(xd - lo), np.abs(hi - xd)
    lo_even = ((x.view(np.uint32) >> 16) & 1) == 0
    want = np.where(dlo < dhi, lo, np.where(dhi < dlo, hi, np.where(lo_even, lo, hi)))
    assert np.array_equal(got, want)


# ------------------------------------------------------------------------------------------------ files ---------

def sample_tensors():
    rng = np.random.default_rng(2)
    return {
        "a.f32": rng.standard_normal((3, 5)).astype(np.float32),
        "b.bf16": rng.standard_normal((4, 7)).astype(np.float32),
        "c.fp8": (rng.standard_normal((6, 2)) * 50).astype(np.float32),
        "d.f16": rng.standard_normal((9,)).astype(np.float16),
        "e.i64": np.arange(5, dtype=np.int64),
        "f.i32": np.arange(-3, 3, dtype=np.int32).reshape(2, 3),
        "g.empty": np.zeros((0, 4), dtype=np.float32),
        "h.scalar": np.array(3.5, dtype=np.float32),
    }


def test_roundtrip_all_dtypes(tmp_path):
    t = sample_tensors()
    dtypes = {"b.bf16": "BF16", "c.fp8": "F8_E4M3"}
    p = str(tmp_path / "x.safetensors")
    st.write_safetensors(p, t, dtypes, metadata={"format": "pt", "note": "hi"})
    f = st.SafetensorsFile(p)
    assert f.metadata == {"format": "pt", "note": "hi"}
    assert f.keys() == list(t)
    assert f.info("b.bf16").dtype == "BF16" and f.info("c.fp8").dtype == "F8_E4M3"
    assert f.info("d.f16").dtype == "F16" and f.info("e.i64").dtype == "I64" and f.info("f.i32").dtype == "I32"
    assert np.array_equal(f.get("a.f32"), t["a.f32"])
    assert np.array_equal(f.get("b.bf16"), st.bf16_to_f32(st.f32_to_bf16(t["b.bf16"])))
    assert np.array_equal(f.raw("b.bf16"), st.f32_to_bf16(t["b.bf16"]))
    assert np.array_equal(f.get("c.fp8"), st.fp8_e4m3_to_f32(st.f32_to_fp8_e4m3(t["c.fp8"])))
    assert np.array_equal(f.get("d.f16"), t["d.f16"].astype(np.float32))
    assert np.array_equal(f.get("e.i64"), t["e.i64"]) and f.get("e.i64").dtype == np.int64
    assert np.array_equal(f.get("f.i32"), t["f.i32"])
    assert f.get("g.empty").shape == (0, 4)
    assert f.get("h.scalar").shape == () and float(f.get("h.scalar")) == 3.5
    # header is padded to 8 bytes and the layout is exactly header + packed data
    with open(p, "rb") as fh:
        n = struct.unpack("<Q", fh.read(8))[0]
    assert n % 8 == 0
    assert os.path.getsize(p) == 8 + n + sum(i.nbytes for i in f.tensors.values())


def test_raw_bits_are_written_verbatim(tmp_path):
    p = str(tmp_path / "raw.safetensors")
    codes = np.arange(256, dtype=np.uint8).reshape(16, 16)
    bits = np.arange(0, 65536, 257, dtype=np.uint16)
    st.write_safetensors(p, {"q": codes, "b": bits}, {"q": "F8_E4M3", "b": "BF16"})
    f = st.SafetensorsFile(p)
    assert np.array_equal(f.raw("q"), codes) and np.array_equal(f.raw("b"), bits)


def test_sharded_checkpoint_reads_same_as_single(tmp_path):
    t = sample_tensors()
    dtypes = {"b.bf16": "BF16", "c.fp8": "F8_E4M3"}
    specs = [(k, dtypes.get(k) or st.default_dtype_for(v), v.shape) for k, v in t.items()]
    one = tmp_path / "one"
    three = tmp_path / "three"
    assert st.write_checkpoint_tensors(str(one), specs, t.__getitem__, shards=1) == ["model.safetensors"]
    names = st.write_checkpoint_tensors(str(three), specs, t.__getitem__, shards=3)
    assert names == [f"model-0000{i}-of-00003.safetensors" for i in (1, 2, 3)]
    assert not (one / "model.safetensors.index.json").exists()
    idx = json.loads((three / "model.safetensors.index.json").read_text())
    assert set(idx) == {"metadata", "weight_map"} and set(idx["weight_map"]) == set(t)
    assert set(idx["weight_map"].values()) == set(names)
    a, b = st.Checkpoint(str(one)), st.Checkpoint(str(three))
    assert sorted(a.keys()) == sorted(b.keys()) == sorted(t)
    for k in t:
        assert a.info(k).dtype == b.info(k).dtype and a.info(k).shape == b.info(k).shape
        assert np.array_equal(a.raw(k), b.raw(k))
        assert np.array_equal(a.get(k), b.get(k), equal_nan=True)
    # a single file can also be opened directly
    c = st.Checkpoint(str(one / "model.safetensors"))
    assert sorted(c.keys()) == sorted(t)


def test_index_errors(tmp_path):
    t = {"x": np.ones(3, np.float32), "y": np.zeros(2, np.float32)}
    specs = [(k, "F32", v.shape) for k, v in t.items()]
    st.write_checkpoint_tensors(str(tmp_path), specs, t.__getitem__, shards=2)
    ip = tmp_path / "model.safetensors.index.json"
    idx = json.loads(ip.read_text())
    idx["weight_map"]["z"] = "model-00009-of-00009.safetensors"
    ip.write_text(json.dumps(idx))
    with pytest.raises(ValueError, match=r"'z'.*missing file"):
        st.Checkpoint(str(tmp_path))
    del idx["weight_map"]["z"]
    idx["weight_map"]["x"] = "model-00002-of-00002.safetensors"  # x lives in shard 1
    ip.write_text(json.dumps(idx))
    with pytest.raises(ValueError, match=r"'x' is not in"):
        st.Checkpoint(str(tmp_path))
    ip.write_text("[]")
    with pytest.raises(ValueError, match="weight_map"):
        st.Checkpoint(str(tmp_path))
    with pytest.raises(ValueError, match="does not exist"):
        st.Checkpoint(str(tmp_path / "nope"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="neither"):
        st.Checkpoint(str(empty))


# ------------------------------------------------------------------------------------------------ strict errors -

def craft(path, header, data=b"", raw_header=None, length=None):
    """Write a safetensors file by hand: header dict (or raw bytes), data buffer, optional bogus length."""
    hb = raw_header if raw_header is not None else json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb) if length is None else length))
        f.write(hb)
        f.write(data)
    return str(path)


def ent(dtype, shape, b, e):
    return {"dtype": dtype, "shape": shape, "data_offsets": [b, e]}


def test_valid_crafted_file_with_gap_and_padding(tmp_path):
    hb = json.dumps({"w": ent("F32", [2], 8, 16)}).encode() + b"    "
    p = craft(tmp_path / "ok.safetensors", None, b"\0" * 8 + struct.pack("<2f", 1.5, -2.0), raw_header=hb)
    assert list(st.SafetensorsFile(p).get("w")) == [1.5, -2.0]


@pytest.mark.parametrize("kind,pattern", [
    ("short", r"too short"),
    ("truncated", r"tensor 'w'.*past the end"),
    ("header_past_end", r"header length .* past the end"),
    ("header_too_big", r"exceeds the limit"),
    ("overlap", r"'a' and 'b' have overlapping"),
    ("unknown_dtype", r"tensor 'w'.*unknown or unsupported dtype 'Q4'"),
    ("f64_dtype", r"tensor 'w'.*unsupported dtype 'F64'"),
    ("size_mismatch", r"tensor 'w'.*needs 24"),
    ("not_object", r"not a JSON object"),
    ("bad_json", r"not valid UTF-8 JSON"),
    ("duplicate_key", r"duplicate key"),
    ("bad_shape", r"tensor 'w'.*shape"),
    ("bad_offsets", r"tensor 'w'.*data_offsets"),
    ("bad_metadata", r"__metadata__"),
    ("extra_field", r"tensor 'w'.*exactly"),
])
def test_strict_reader_errors(tmp_path, kind, pattern):
    p = tmp_path / f"{kind}.safetensors"
    d24 = b"\0" * 24
    if kind == "short":
        p.write_bytes(b"\x01\x02\x03")
    elif kind == "truncated":
        craft(p, {"w": ent("F32", [2, 3], 0, 24)}, d24[:20])
    elif kind == "header_past_end":
        craft(p, {"w": ent("F32", [2, 3], 0, 24)}, d24, length=10_000)
    elif kind == "header_too_big":
        craft(p, {}, b"", length=1 << 40)
    elif kind == "overlap":
        craft(p, {"a": ent("F32", [4], 0, 16), "b": ent("F32", [2], 8, 16)}, d24)
    elif kind == "unknown_dtype":
        craft(p, {"w": ent("Q4", [2], 0, 2)}, d24)
    elif kind == "f64_dtype":
        craft(p, {"w": ent("F64", [2], 0, 16)}, d24)
    elif kind == "size_mismatch":
        craft(p, {"w": ent("F32", [2, 3], 0, 20)}, d24)
    elif kind == "not_object":
        craft(p, None, d24, raw_header=b"[1, 2, 3]")
    elif kind == "bad_json":
        craft(p, None, d24, raw_header=b"{\"w\": ")
    elif kind == "duplicate_key":
        craft(p, None, d24, raw_header=b'{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, '
                                        b'"w": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}')
    elif kind == "bad_shape":
        craft(p, {"w": ent("F32", [-1], 0, 4)}, d24)
    elif kind == "bad_offsets":
        craft(p, {"w": ent("F32", [1], 8, 4)}, d24)
    elif kind == "bad_metadata":
        craft(p, {"__metadata__": {"a": 1}, "w": ent("F32", [1], 0, 4)}, d24)
    elif kind == "extra_field":
        craft(p, {"w": dict(ent("F32", [1], 0, 4), extra=1)}, d24)
    with pytest.raises(ValueError, match=pattern) as ei:
        st.SafetensorsFile(str(p))
    assert str(p) in str(ei.value)  # the message names the file


def test_writer_rejects_bad_input(tmp_path):
    p = str(tmp_path / "w.safetensors")
    with pytest.raises(ValueError, match="unsupported dtype"):
        st.write_safetensors(p, {"x": np.zeros(2, np.float32)}, {"x": "F64"})
    with pytest.raises(ValueError, match="shape"):
        with st.SafetensorsWriter(p, [("x", "F32", (3,))]) as w:
            w.write("x", np.zeros(2, np.float32))
    with pytest.raises(ValueError, match="closed before"):
        with st.SafetensorsWriter(p, [("x", "F32", (2,)), ("y", "F32", (1,))]) as w:
            w.write("x", np.zeros(2, np.float32))
