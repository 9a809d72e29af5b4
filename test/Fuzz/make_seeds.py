#!/usr/bin/env python3
"""Writes the fuzzers' seed corpora from the repository's test data (test/Fuzz/corpus/<harness>/).

    python3 test/Fuzz/make_seeds.py [--out test/Fuzz/corpus] [--manifest-dir DIR ...]

Seeds are small on purpose: libFuzzer mutates the whole input each execution, and its max_len defaults to the
largest seed. So the safetensors seeds keep the golden checkpoints' small tensors only (real headers, real bytes,
re-laid out back to back), and the sharded seeds split those over two shards with their index. Manifests come
from the golden checkpoints through test/Runtime/Inputs/fake_artifact.py (the importer's full weight catalogue) and
from any --manifest-dir of a compiled artifact. The separator between the files of one input is FuzzUtil.h's.
"""

import argparse
import glob
import json
import os
import struct
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SEPARATOR = b"\n@@dsv3-file@@\n"  # FuzzUtil.h kFileSeparator
DTYPE_SIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1, "I64": 8, "I32": 4}


def read_safetensors(path):
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    data = blob[8 + n:]
    tensors = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        tensors.append((name, info["dtype"], info["shape"], data[b:e]))
    return header.get("__metadata__"), sorted(tensors)


def write_safetensors(tensors, metadata=None):
    header = {}
    if metadata:
        header["__metadata__"] = metadata
    data = b""
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + data


def put(out, harness, name, blob):
    d = os.path.join(out, harness)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(blob)


def safetensors_seeds(out):
    for ckpt in sorted(glob.glob(os.path.join(ROOT, "test/data/golden/*/model.safetensors"))):
        model = os.path.basename(os.path.dirname(ckpt))
        metadata, tensors = read_safetensors(ckpt)
        small = [t for t in tensors if len(t[3]) <= 1024][:12]
        put(out, "safetensors", model + "-single", write_safetensors(small, metadata))
        half = len(small) // 2
        shards = [small[:half], small[half:]]
        names = ["model-%05d-of-%05d.safetensors" % (i + 1, len(shards)) for i in range(len(shards))]
        index = {"metadata": {"total_size": sum(len(t[3]) for t in small)},
                 "weight_map": {t[0]: names[i] for i, s in enumerate(shards) for t in s}}
        blob = json.dumps(index, indent=1).encode()
        for s in shards:
            blob += SEPARATOR + write_safetensors(s, metadata)
        put(out, "safetensors", model + "-sharded", blob)
    # Edge shapes the golden files lack: a scalar, an empty tensor, every dtype.
    edge = [("empty", "F32", [0, 4], b""), ("scalar", "F64", [], b"\0" * 8)]
    for i, (dtype, size) in enumerate(sorted(DTYPE_SIZE.items())):
        edge.append(("t%d" % i, dtype, [2], b"\x01" * (2 * size)))
    put(out, "safetensors", "edge-dtypes", write_safetensors(edge, {"format": "pt"}))


def config_seeds(out):
    paths = sorted(glob.glob(os.path.join(ROOT, "test/data/golden/*/config.json")) +
                   glob.glob(os.path.join(ROOT, "test/data/configs/*.json")))
    for p in paths:
        name = os.path.basename(os.path.dirname(p)) if p.endswith("config.json") else os.path.basename(p)[:-5]
        with open(p, "rb") as f:
            put(out, "config", name, f.read())


def manifest_seeds(out, manifest_dirs):
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "python"))
    fake = os.path.join(ROOT, "test/Runtime/Inputs/fake_artifact.py")
    with tempfile.TemporaryDirectory() as tmp:
        lib = os.path.join(tmp, "libfake.so")
        open(lib, "wb").close()
        for ckpt in sorted(glob.glob(os.path.join(ROOT, "test/data/golden/*"))):
            if not os.path.isdir(ckpt):
                continue
            art = os.path.join(tmp, os.path.basename(ckpt))
            subprocess.run([sys.executable, fake, "--checkpoint", ckpt, "--lib", lib, "--out", art,
                            "--max-batch", "2", "--max-seq-len", "64"], check=True, env=env,
                           stdout=subprocess.DEVNULL)
            with open(os.path.join(art, "manifest.json"), "rb") as f:
                put(out, "manifest", "fake-" + os.path.basename(ckpt), f.read())
    for d in manifest_dirs:
        with open(os.path.join(d, "manifest.json"), "rb") as f:
            put(out, "manifest", "compiled-" + os.path.basename(os.path.normpath(d)), f.read())


def tokenizer_seeds(out):
    tok_dir = os.path.join(ROOT, "test/data/tokenizer")
    with open(os.path.join(tok_dir, "corpus.txt"), "rb") as f:
        corpus = f.read()
    # Text mode: pieces of the corpus, plus special tokens and broken UTF-8.
    for i in range(8):
        put(out, "tokenizer", "text-%d" % i, corpus[i * 400:(i + 1) * 400])
    put(out, "tokenizer", "text-special", "<｜begin▁of▁sentence｜>Hi<｜end▁of▁sentence｜>\xff\xfe é 中文".encode("utf-8", "surrogateescape"))
    put(out, "tokenizer", "text-invalid-utf8", b"abc\xc3\x28\xe2\x82\xf0\x9f\x98")
    # Load mode: tokenizer.json, tokenizer_config.json, text.
    with open(os.path.join(tok_dir, "tokenizer.json"), "rb") as f:
        tok = f.read()
    with open(os.path.join(tok_dir, "tokenizer_config.json"), "rb") as f:
        cfg = f.read()
    put(out, "tokenizer", "load-full", tok + SEPARATOR + cfg + SEPARATOR + corpus[:200])
    put(out, "tokenizer", "load-no-config", tok + SEPARATOR + SEPARATOR + b"Hello")


def serve_seeds(out):
    completions = [
        {"model": "m", "prompt": "Hello", "max_tokens": 8, "temperature": 0.7, "top_p": 0.9, "seed": 1,
         "stop": ["\n", "END"], "stream": True, "stream_options": {"include_usage": True}},
        {"prompt": [1, 2, 3], "max_tokens": 4, "ignore_eos": True, "return_token_ids": True},
        {"prompt": "x", "temperature": 0},
    ]
    chats = [
        {"model": "m", "messages": [{"role": "system", "content": "Be brief."},
                                    {"role": "user", "content": "Hi"}], "max_completion_tokens": 16},
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}], "stream": True},
    ]
    for i, body in enumerate(completions):
        put(out, "serve_request", "completions-%d" % i, b"\0" + json.dumps(body).encode())
    for i, body in enumerate(chats):
        put(out, "serve_request", "chat-%d" % i, b"\1" + json.dumps(body).encode())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(ROOT, "test/Fuzz/corpus"))
    ap.add_argument("--manifest-dir", action="append", default=[], help="a compiled artifact's directory")
    args = ap.parse_args()
    safetensors_seeds(args.out)
    config_seeds(args.out)
    manifest_seeds(args.out, args.manifest_dir)
    tokenizer_seeds(args.out)
    serve_seeds(args.out)


if __name__ == "__main__":
    main()
