"""ctypes bindings to libdsv3rt, the dsv3 runtime (C API: include/dsv3/Runtime/dsv3rt.h).

    from dsv3.runtime import Runtime
    with Runtime("artifact_dir", "checkpoint_dir", threads=4) as rt:
        out = rt.generate([[1, 2, 3], [4, 5]], max_new_tokens=8)          # greedy
        out.tokens            # [[...], [...]] generated ids per sequence (an emitted eos included)
        out = rt.generate([[1, 2, 3]], max_new_tokens=8, temperature=0.7, top_p=0.9, seed=1, logits=True)
        out.logits[0]         # float32 [1 + len(out.tokens[0]), vocab]: row 0 after the prompt, row i after token i
        rt.last_logits(0)     # float32 [vocab]: the latest next-token logits of sequence 0
        rt.stats              # dict: prefill/decode tokens and seconds, weights_bytes, kv_cache_bytes, ...

The library is found through $DSV3RT_LIBRARY, else $DSV3_BUILD_DIR/lib/libdsv3rt.so, else build*/lib/libdsv3rt.so of
this repository, else the system search path. It is loaded with RTLD_GLOBAL so that a compiled artifact can call back
into it (dsv3rt_parallel_for). Errors raise RuntimeError with the runtime's one-line message.
"""

from __future__ import annotations

import ctypes
import glob
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

_PROGRESS_FN = ctypes.CFUNCTYPE(None, ctypes.c_uint64, ctypes.c_uint64, ctypes.c_void_p)
# dsv3rt_token_fn: (seq, token, user) -> non-zero stops that sequence.
_TOKEN_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int64, ctypes.c_int32, ctypes.c_void_p)


class _OpenOptions(ctypes.Structure):
    _fields_ = [("num_threads", ctypes.c_int32), ("progress", _PROGRESS_FN), ("progress_user", ctypes.c_void_p),
                ("device", ctypes.c_int32)]


DEVICES = {"cpu": 0, "cuda": 1}  # DSV3RT_DEVICE_CPU, DSV3RT_DEVICE_CUDA


class _ArtifactInfo(ctypes.Structure):
    _fields_ = [("vocab_size", ctypes.c_int64), ("max_batch", ctypes.c_int64), ("max_seq_len", ctypes.c_int64),
                ("eos_token_id", ctypes.c_int64), ("num_layers", ctypes.c_int64), ("num_weights", ctypes.c_int64),
                ("weights_bytes", ctypes.c_uint64), ("kv_cache_bytes", ctypes.c_uint64), ("device", ctypes.c_int32)]


class _Sampling(ctypes.Structure):
    _fields_ = [("max_new_tokens", ctypes.c_int32), ("temperature", ctypes.c_float), ("top_p", ctypes.c_float),
                ("seed", ctypes.c_uint64), ("stop_at_eos", ctypes.c_int32)]


class _Stats(ctypes.Structure):
    _fields_ = [("prefill_tokens", ctypes.c_int64), ("prefill_seconds", ctypes.c_double),
                ("decode_tokens", ctypes.c_int64), ("decode_seconds", ctypes.c_double),
                ("prefill_calls", ctypes.c_int64), ("decode_calls", ctypes.c_int64),
                ("weights_bytes", ctypes.c_uint64), ("weights_mapped_bytes", ctypes.c_uint64),
                ("kv_cache_bytes", ctypes.c_uint64), ("load_seconds", ctypes.c_double),
                ("num_threads", ctypes.c_int32)]


_ERR_LEN = 4096
_lib: Optional[ctypes.CDLL] = None


class _SpeculativeStats(ctypes.Structure):
    _fields_ = [("verify_calls", ctypes.c_int64), ("draft_calls", ctypes.c_int64), ("drafted", ctypes.c_int64),
                ("accepted", ctypes.c_int64), ("generated", ctypes.c_int64), ("prompt_seconds", ctypes.c_double),
                ("decode_seconds", ctypes.c_double)]


def _candidates() -> List[str]:
    out = []
    if os.environ.get("DSV3RT_LIBRARY"):
        out.append(os.environ["DSV3RT_LIBRARY"])
    if os.environ.get("DSV3_BUILD_DIR"):
        out.append(os.path.join(os.environ["DSV3_BUILD_DIR"], "lib", "libdsv3rt.so"))
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out += sorted(glob.glob(os.path.join(root, "build", "lib", "libdsv3rt.so")))
    out += sorted(glob.glob(os.path.join(root, "build*", "lib", "libdsv3rt.so")))
    return out


def library_path() -> str:
    """Path of the libdsv3rt.so this module loads (see the module docstring)."""
    for path in _candidates():
        if os.path.isfile(path):
            return path
    return "libdsv3rt.so"  # the dynamic loader's search path


def _load() -> ctypes.CDLL:
    global _lib
    if _lib is not None:
        return _lib
    path = library_path()
    try:
        lib = ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
    except OSError as e:
        raise RuntimeError(f"cannot load libdsv3rt ({path}): {e}; build it (ninja dsv3rt) or set "
                           "DSV3RT_LIBRARY") from None
    p, i64, i32 = ctypes.POINTER, ctypes.c_int64, ctypes.c_int32
    lib.dsv3rt_version.restype = ctypes.c_char_p
    lib.dsv3rt_version.argtypes = []
    lib.dsv3rt_open_options_init.argtypes = [p(_OpenOptions)]
    lib.dsv3rt_sampling_init.argtypes = [p(_Sampling)]
    lib.dsv3rt_read_artifact_info.restype = ctypes.c_int
    lib.dsv3rt_read_artifact_info.argtypes = [ctypes.c_char_p, p(_ArtifactInfo), ctypes.c_char_p, ctypes.c_size_t]
    lib.dsv3rt_open.restype = ctypes.c_void_p
    lib.dsv3rt_open.argtypes = [ctypes.c_char_p, ctypes.c_char_p, p(_OpenOptions), ctypes.c_char_p, ctypes.c_size_t]
    lib.dsv3rt_close.restype = None
    lib.dsv3rt_close.argtypes = [ctypes.c_void_p]
    lib.dsv3rt_model_info.argtypes = [ctypes.c_void_p, p(_ArtifactInfo)]
    lib.dsv3rt_generate.restype = ctypes.c_int
    lib.dsv3rt_generate.argtypes = [ctypes.c_void_p, p(p(i32)), p(i64), i64, p(_Sampling), p(i32), p(i64),
                                    p(ctypes.c_float), ctypes.c_char_p, ctypes.c_size_t]
    lib.dsv3rt_generate_speculative.restype = ctypes.c_int
    lib.dsv3rt_generate_speculative.argtypes = [ctypes.c_void_p, p(i32), i64, p(_Sampling), i64, p(i32), p(i64),
                                                p(_SpeculativeStats), p(ctypes.c_float), p(i64), i64, p(i64),
                                                ctypes.c_char_p, ctypes.c_size_t]
    lib.dsv3rt_last_logits.restype = i64
    lib.dsv3rt_last_logits.argtypes = [ctypes.c_void_p, i64, p(ctypes.c_float), i64]
    lib.dsv3rt_get_stats.argtypes = [ctypes.c_void_p, p(_Stats)]
    lib.dsv3rt_set_token_callback.restype = None
    lib.dsv3rt_set_token_callback.argtypes = [ctypes.c_void_p, _TOKEN_FN, ctypes.c_void_p]
    lib.dsv3rt_num_threads.restype = ctypes.c_int
    lib.dsv3rt_num_threads.argtypes = []
    _lib = lib
    return lib


def version() -> str:
    return _load().dsv3rt_version().decode()


def _struct_dict(s: ctypes.Structure) -> Dict[str, object]:
    return {name: getattr(s, name) for name, _ in s._fields_}


def artifact_info(artifact_dir: str) -> Dict[str, int]:
    """The artifact's limits from its manifest alone (no library, no weights)."""
    lib = _load()
    info, err = _ArtifactInfo(), ctypes.create_string_buffer(_ERR_LEN)
    if lib.dsv3rt_read_artifact_info(os.fsencode(artifact_dir), ctypes.byref(info), err, _ERR_LEN):
        raise RuntimeError(err.value.decode(errors="replace"))
    return _struct_dict(info)


@dataclass
class Generation:
    tokens: List[List[int]]
    logits: Optional[List[np.ndarray]] = None  # per sequence: float32 [1 + len(tokens[i]), vocab]
    stats: Dict[str, object] = field(default_factory=dict)


class Runtime:
    """An artifact opened with a checkpoint's weights. Not thread-safe; close() (or `with`) frees it."""

    def __init__(self, artifact_dir: str, checkpoint_dir: str, threads: int = 0, progress=None,
                 device: Optional[str] = None):
        """threads: 0 = one per available CPU. progress: optional callable(done_bytes, total_bytes).
        device: "cpu" or "cuda"; None = what the artifact was compiled for."""
        self._lib = _load()
        self._handle = None
        options = _OpenOptions()
        self._lib.dsv3rt_open_options_init(ctypes.byref(options))
        options.num_threads = int(threads)
        if device is None:
            options.device = artifact_info(artifact_dir)["device"]
        elif device in DEVICES:
            options.device = DEVICES[device]
        else:
            raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
        if progress is not None:
            # Kept on self: the callback must outlive the call that uses it.
            self._progress = _PROGRESS_FN(lambda done, total, _user: progress(done, total))
            options.progress = self._progress
        err = ctypes.create_string_buffer(_ERR_LEN)
        handle = self._lib.dsv3rt_open(os.fsencode(artifact_dir), os.fsencode(checkpoint_dir),
                                       ctypes.byref(options), err, _ERR_LEN)
        if not handle:
            raise RuntimeError(err.value.decode(errors="replace"))
        self._handle = handle
        info = _ArtifactInfo()
        self._lib.dsv3rt_model_info(handle, ctypes.byref(info))
        self.info = _struct_dict(info)
        self.vocab_size = info.vocab_size
        self.max_batch = info.max_batch
        self.max_seq_len = info.max_seq_len
        self.eos_token_id = info.eos_token_id

    # -- lifetime --------------------------------------------------------------------------------------------------
    def close(self) -> None:
        if self._handle:
            self._lib.dsv3rt_close(self._handle)
            self._handle = None

    def __enter__(self) -> "Runtime":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown
            pass

    def _require_open(self) -> None:
        if not self._handle:
            raise RuntimeError("the runtime is closed")

    # -- generation ------------------------------------------------------------------------------------------------
    def _sampling(self, max_new_tokens, temperature, top_p, seed, stop_at_eos) -> "_Sampling":
        sampling = _Sampling()
        self._lib.dsv3rt_sampling_init(ctypes.byref(sampling))
        sampling.max_new_tokens = int(max_new_tokens)
        sampling.temperature = float(temperature)
        sampling.top_p = float(top_p)
        sampling.seed = int(seed) & (2**64 - 1)
        sampling.stop_at_eos = 1 if stop_at_eos else 0
        return sampling

    def generate(self, prompts: Sequence[Sequence[int]], max_new_tokens: int = 16, temperature: float = 0.0,
                 top_p: float = 1.0, seed: int = 0, stop_at_eos: bool = True, logits: bool = False,
                 on_token=None) -> Generation:
        """Generates up to max_new_tokens per prompt (one prompt per sequence of the batch). temperature 0 is greedy.
        With logits=True every generated token is fed back once more, and Generation.logits holds, per sequence,
        float32 [1 + n_generated, vocab] (row 0: after the prompt; row i: after feeding generated token i).
        on_token: optional callable(seq, token), called as each token is sampled (streaming); returning False ends
        that sequence after this token. An exception it raises ends the sequence and is raised from generate."""
        self._require_open()
        if isinstance(prompts, (str, bytes)) or not all(hasattr(p, "__len__") for p in prompts):
            raise TypeError("prompts must be a sequence of token-id sequences, e.g. [[1, 2, 3]]")
        batch = len(prompts)
        arrays = [np.ascontiguousarray(np.asarray(p, dtype=np.int64)) for p in prompts]
        for i, a in enumerate(arrays):
            if a.ndim != 1:
                raise ValueError(f"sequence {i}: a prompt must be a flat list of token ids")
            if a.size and (a.min() < -2**31 or a.max() >= 2**31):
                raise ValueError(f"sequence {i}: token ids must fit in int32")
        arrays = [a.astype(np.int32) for a in arrays]
        ptr_t = ctypes.POINTER(ctypes.c_int32)
        ptrs = (ptr_t * max(batch, 1))(*[a.ctypes.data_as(ptr_t) for a in arrays])
        lens = (ctypes.c_int64 * max(batch, 1))(*[a.size for a in arrays])

        if not -2**31 <= int(max_new_tokens) < 2**31:
            raise ValueError(f"max_new_tokens must fit in int32, got {max_new_tokens}")
        sampling = self._sampling(max_new_tokens, temperature, top_p, seed, stop_at_eos)

        n = max(int(max_new_tokens), 0)  # a negative count is the runtime's error to report
        out_tokens = np.zeros(max(batch * n, 1), dtype=np.int32)
        out_counts = np.zeros(max(batch, 1), dtype=np.int64)
        out_logits = np.zeros((batch, 1 + n, self.vocab_size), dtype=np.float32) if logits else None
        err = ctypes.create_string_buffer(_ERR_LEN)
        raised = []
        if on_token is not None:
            def forward(seq, token, _user):
                if raised:
                    return 1
                try:
                    return 1 if on_token(int(seq), int(token)) is False else 0
                except BaseException as e:  # noqa: B902 -- must not unwind through C
                    raised.append(e)
                    return 1
            callback = _TOKEN_FN(forward)  # kept alive until the call returns
            self._lib.dsv3rt_set_token_callback(self._handle, callback, None)
        try:
            rc = self._lib.dsv3rt_generate(
                self._handle, ptrs, lens, batch, ctypes.byref(sampling),
                out_tokens.ctypes.data_as(ptr_t), out_counts.ctypes.data_as(ctypes.POINTER(ctypes.c_int64)),
                out_logits.ctypes.data_as(ctypes.POINTER(ctypes.c_float)) if logits else None, err, _ERR_LEN)
        finally:
            if on_token is not None:
                self._lib.dsv3rt_set_token_callback(self._handle, _TOKEN_FN(), None)
        if raised:
            raise raised[0]
        if rc:
            raise RuntimeError(err.value.decode(errors="replace"))
        tokens = [out_tokens[i * n:i * n + out_counts[i]].tolist() for i in range(batch)]
        rows = [out_logits[i, :1 + len(tokens[i])].copy() for i in range(batch)] if logits else None
        return Generation(tokens=tokens, logits=rows, stats=self.stats)

    def generate_speculative(self, prompt: Sequence[int], max_new_tokens: int = 16, draft_tokens: int = 3,
                             temperature: float = 0.0, top_p: float = 1.0, seed: int = 0,
                             stop_at_eos: bool = True) -> Tuple[List[int], Dict[str, object]]:
        """One prompt decoded with the MTP module as the draft model (dsv3rt_generate_speculative; an artifact
        compiled with --mtp). Returns (tokens, speculative stats)."""
        self._require_open()
        a = np.ascontiguousarray(np.asarray(prompt, dtype=np.int64))
        if a.ndim != 1 or (a.size and (a.min() < -2**31 or a.max() >= 2**31)):
            raise ValueError("the prompt must be a flat list of int32 token ids")
        a = a.astype(np.int32)
        sampling = self._sampling(max_new_tokens, temperature, top_p, seed, stop_at_eos)
        n = max(int(max_new_tokens), 0)
        out = np.zeros(max(n, 1), dtype=np.int32)
        count = ctypes.c_int64(0)
        stats = _SpeculativeStats()
        err = ctypes.create_string_buffer(_ERR_LEN)
        ptr_t = ctypes.POINTER(ctypes.c_int32)
        rc = self._lib.dsv3rt_generate_speculative(
            self._handle, a.ctypes.data_as(ptr_t), a.size, ctypes.byref(sampling), int(draft_tokens),
            out.ctypes.data_as(ptr_t), ctypes.byref(count), ctypes.byref(stats), None, None, 0, None, err,
            _ERR_LEN)
        if rc:
            raise RuntimeError(err.value.decode(errors="replace"))
        return out[:count.value].tolist(), _struct_dict(stats)

    def last_logits(self, seq: int = 0) -> np.ndarray:
        """float32 [vocab]: the latest next-token logits of sequence `seq` of the last generate call."""
        self._require_open()
        out = np.empty(self.vocab_size, dtype=np.float32)
        n = self._lib.dsv3rt_last_logits(self._handle, int(seq), out.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
                                         out.size)
        if n != self.vocab_size:
            raise RuntimeError(f"no logits for sequence {seq} (run generate first; 0 <= seq < batch)")
        return out

    @property
    def stats(self) -> Dict[str, object]:
        """Of the last generate call (prefill_*/decode_* tokens, seconds, calls) and of the model (weights_bytes,
        weights_mapped_bytes, kv_cache_bytes, load_seconds, num_threads)."""
        self._require_open()
        s = _Stats()
        self._lib.dsv3rt_get_stats(self._handle, ctypes.byref(s))
        return _struct_dict(s)

    @property
    def num_threads(self) -> int:
        return int(self.stats["num_threads"])
