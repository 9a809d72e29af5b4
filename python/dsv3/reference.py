"""numpy reference forward pass of a DeepSeek-V3-architecture model (spec: /work/shared/docs/dsv3-model-spec.md).

Numerics follow the golden data: the official inference code run with float32 activations and weights upcast
exactly (FP8: f32(code) * weight_scale_inv per 128x128 block, no bf16 rounding).  Everything is computed in the
compute dtype (float32 by default; float64 is available for tight self-consistency checks).

Choices where the sources differ (all reproduce the golden cases; see python/README.md):
  * RMSNorm: x * rsqrt(mean(x^2) + eps) * w, all in the compute dtype.
  * RoPE: interleaved pairs (x[2i], x[2i+1]) as in the official code; YaRN frequency blend whenever rope_scaling
    is yarn (HF rule; official additionally requires max_seq_len > original_max_position_embeddings).
    cos/sin are multiplied by mscale(factor, mscale) / mscale(factor, mscale_all_dim) (HF; 1.0 for all real
    configs, the official code has no such factor).
  * softmax scale: qk_head_dim^-0.5 * mscale^2 with mscale = 0.1 * mscale_all_dim * ln(factor) + 1 when rope_scaling
    is yarn and mscale_all_dim != 0 (HF rule).
  * Router: scores = sigmoid|softmax(x Wg^T); selection on scores + e_score_correction_bias iff topk_method ==
    "noaux_tc"; group score = sum of the top-2 biased scores (bias) or max (no bias); unselected groups -> -inf;
    mixing weights from the unbiased scores, divided by their sum iff norm_topk_prob (HF semantics), times
    routed_scaling_factor.  Ties in top-k go to the lower index.
  * MLA: "absorbed" (latent cache, official attn_impl=absorb) or "naive" (per-head K/V cache); equal in exact
    arithmetic.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .config import ModelConfig, load_config, yarn_get_mscale
from .safetensors_io import Checkpoint, bf16_to_f32, decode, f32_to_bf16

MLA_FORMS = ("absorbed", "naive")


# ----------------------------------------------------------------------------------------------------------------
# weights
# ----------------------------------------------------------------------------------------------------------------

def dequant_fp8_block(codes_f32: np.ndarray, scale_inv: np.ndarray, block: Sequence[int]) -> np.ndarray:
    """W[i, j] = f32(code[i, j]) * scale_inv[i // bm, j // bn] in float32 (spec §7.3 without the bf16 cast);
    edge blocks are partial."""
    bm, bn = block
    m, n = codes_f32.shape
    s = np.repeat(np.repeat(scale_inv.astype(np.float32), bm, axis=0), bn, axis=1)[:m, :n]
    return codes_f32.astype(np.float32) * s


class WeightLoader:
    """Looks up HF-named tensors, checks shapes and returns them dequantized in the compute dtype."""

    def __init__(self, ckpt: Checkpoint, cfg: ModelConfig, dtype=np.float32):
        self.ckpt = ckpt
        self.cfg = cfg
        self.dtype = np.dtype(dtype)
        self.bf16_ids = set()  # id() of every array loaded from a BF16 tensor

    def has(self, name: str) -> bool:
        return name in self.ckpt

    def get(self, name: str, shape: Tuple[int, ...]) -> np.ndarray:
        if name not in self.ckpt:
            raise ValueError(f"{self.ckpt.path}: missing tensor {name!r}")
        info = self.ckpt.info(name)
        if tuple(info.shape) != tuple(shape):
            raise ValueError(f"{self.ckpt.path}: tensor {name!r} has shape {list(info.shape)}, "
                             f"config implies {list(shape)}")
        w = decode(self.ckpt.raw(name), info.dtype)
        if info.dtype == "F8_E4M3":
            sname = name + "_scale_inv"
            if len(shape) != 2:
                raise ValueError(f"{self.ckpt.path}: FP8 tensor {name!r} must be 2-D")
            bm, bn = self.cfg.fp8_block_size
            sshape = (math.ceil(shape[0] / bm), math.ceil(shape[1] / bn))
            if sname not in self.ckpt:
                raise ValueError(f"{self.ckpt.path}: FP8 tensor {name!r} has no {sname!r}")
            sinfo = self.ckpt.info(sname)
            if tuple(sinfo.shape) != sshape:
                raise ValueError(f"{self.ckpt.path}: tensor {sname!r} has shape {list(sinfo.shape)}, "
                                 f"expected {list(sshape)} for blocks of {bm}x{bn}")
            w = dequant_fp8_block(w, decode(self.ckpt.raw(sname), sinfo.dtype), (bm, bn))
        w = np.ascontiguousarray(w, dtype=self.dtype)
        if info.dtype == "BF16":
            self.bf16_ids.add(id(w))
        return w


@dataclass
class MLPWeights:
    gate: np.ndarray  # [I, D]   (official w1)
    up: np.ndarray    # [I, D]   (w3)
    down: np.ndarray  # [D, I]   (w2)

    def __call__(self, x: np.ndarray, row_scale: Optional[np.ndarray] = None,
                 bf16_inputs: Tuple[bool, bool] = (False, False)) -> np.ndarray:
        """row_scale ([rows]) multiplies each row's output (its routing weight). bf16_inputs: round the inputs of
        (gate/up, down) to bf16 as the tensor-core expert kernels do (x; the down input times its row scale)."""
        if bf16_inputs[0]:
            x = round_to_bf16(x)
        g = x @ self.gate.T
        u = x @ self.up.T
        act = silu(g) * u
        if row_scale is None:
            return (round_to_bf16(act) if bf16_inputs[1] else act) @ self.down.T
        if bf16_inputs[1]:
            return round_to_bf16(act * row_scale[:, None]) @ self.down.T
        return (act @ self.down.T) * row_scale[:, None]


def load_mlp(wl: WeightLoader, prefix: str, d: int, inter: int) -> MLPWeights:
    return MLPWeights(gate=wl.get(prefix + ".gate_proj.weight", (inter, d)),
                      up=wl.get(prefix + ".up_proj.weight", (inter, d)),
                      down=wl.get(prefix + ".down_proj.weight", (d, inter)))


@dataclass
class MoEWeights:
    gate: np.ndarray                 # [E, D] router
    bias: Optional[np.ndarray]       # [E] e_score_correction_bias (noaux_tc only)
    experts: List[MLPWeights]
    shared: Optional[MLPWeights]


@dataclass
class AttnWeights:
    q_a: Optional[np.ndarray]        # [Q, D]          (None when q_lora_rank is null)
    q_a_norm: Optional[np.ndarray]   # [Q]
    q_b: Optional[np.ndarray]        # [H*dq, Q]
    q: Optional[np.ndarray]          # [H*dq, D]       (plain q_proj)
    kv_a: np.ndarray                 # [C+dr, D]
    kv_a_norm: np.ndarray            # [C]
    kv_b: np.ndarray                 # [H*(dn+dv), C]
    o: np.ndarray                    # [D, H*dv]


@dataclass
class LayerWeights:
    input_norm: np.ndarray
    post_norm: np.ndarray
    attn: AttnWeights
    mlp: Optional[MLPWeights]
    moe: Optional[MoEWeights]


@dataclass
class MtpWeights:
    """The MTP module (spec §6): layer num_hidden_layers of the checkpoint, with its own embedding and head copies."""
    embed: np.ndarray
    enorm: np.ndarray
    hnorm: np.ndarray
    eh_proj: np.ndarray
    layer: LayerWeights
    head_norm: np.ndarray
    head: np.ndarray


def load_layer(wl: WeightLoader, cfg: ModelConfig, i: int) -> LayerWeights:
    p = f"model.layers.{i}."
    D, H = cfg.hidden_size, cfg.num_attention_heads
    dq, dn, dr, dv, C = cfg.qk_head_dim, cfg.qk_nope_head_dim, cfg.qk_rope_head_dim, cfg.v_head_dim, cfg.kv_lora_rank
    a = p + "self_attn."
    if cfg.q_lora_rank is None:
        q_a = q_a_norm = q_b = None
        q = wl.get(a + "q_proj.weight", (H * dq, D))
    else:
        Q = cfg.q_lora_rank
        q_a = wl.get(a + "q_a_proj.weight", (Q, D))
        q_a_norm = wl.get(a + "q_a_layernorm.weight", (Q,))
        q_b = wl.get(a + "q_b_proj.weight", (H * dq, Q))
        q = None
    attn = AttnWeights(q_a=q_a, q_a_norm=q_a_norm, q_b=q_b, q=q,
                       kv_a=wl.get(a + "kv_a_proj_with_mqa.weight", (C + dr, D)),
                       kv_a_norm=wl.get(a + "kv_a_layernorm.weight", (C,)),
                       kv_b=wl.get(a + "kv_b_proj.weight", (H * (dn + dv), C)),
                       o=wl.get(a + "o_proj.weight", (D, H * dv)))
    mlp = moe = None
    if cfg.is_moe_layer(i):
        E, I = cfg.n_routed_experts, cfg.moe_intermediate_size
        m = p + "mlp."
        bias = wl.get(m + "gate.e_score_correction_bias", (E,)) if cfg.uses_router_bias else None
        experts = [load_mlp(wl, f"{m}experts.{e}", D, I) for e in range(E)]
        shared = load_mlp(wl, m + "shared_experts", D, cfg.n_shared_experts * I) if cfg.n_shared_experts else None
        moe = MoEWeights(gate=wl.get(m + "gate.weight", (E, D)), bias=bias, experts=experts, shared=shared)
    else:
        mlp = load_mlp(wl, p + "mlp", D, cfg.intermediate_size)
    return LayerWeights(input_norm=wl.get(p + "input_layernorm.weight", (D,)),
                        post_norm=wl.get(p + "post_attention_layernorm.weight", (D,)),
                        attn=attn, mlp=mlp, moe=moe)


# ----------------------------------------------------------------------------------------------------------------
# elementwise pieces
# ----------------------------------------------------------------------------------------------------------------

def round_to_bf16(x: np.ndarray) -> np.ndarray:
    """f32 -> nearest bf16 (ties to even), returned as f32."""
    return bf16_to_f32(f32_to_bf16(x)).reshape(np.shape(x))


def _e4m3_values() -> np.ndarray:
    """The 127 non-negative finite e4m3fn values, indexed by code (0x7F is NaN): e = code >> 3, m = code & 7;
    subnormal m * 2^-9 at e == 0, else (1 + m / 8) * 2^(e - 7)."""
    codes = np.arange(127)
    e, m = codes >> 3, codes & 7
    return np.where(e == 0, m * 2.0 ** -9, (1 + m / 8) * 2.0 ** (e - 7)).astype(np.float32)


E4M3_VALUES = _e4m3_values()
E4M3_MAX = 448.0


def round_to_e4m3(x: np.ndarray) -> np.ndarray:
    """f32 with |x| <= 448 -> nearest e4m3fn value, ties to the even code, returned as f32 (by table search, not
    the compiled code's bit arithmetic)."""
    a = np.abs(x).astype(np.float32)
    if np.any(a > E4M3_MAX):
        raise ValueError("round_to_e4m3: |x| > 448")
    hi = np.clip(np.searchsorted(E4M3_VALUES, a), 1, len(E4M3_VALUES) - 1)
    lo = hi - 1
    d_lo, d_hi = a - E4M3_VALUES[lo], E4M3_VALUES[hi] - a
    code = np.where(d_lo < d_hi, lo, np.where(d_hi < d_lo, hi, np.where(lo % 2 == 0, lo, hi)))
    return (np.sign(x) * E4M3_VALUES[code]).astype(np.float32)


def fp8_tile_of(codes: int) -> int:
    """Codes per scale in a packed FP8 cache row of `codes` codes: FlashMLA's 128, or the whole row."""
    return 128 if codes % 128 == 0 else codes


def quantize_fp8_latent(c: np.ndarray, tile: int) -> np.ndarray:
    """What the packed FP8 cache (FlashMLA's V32_FP8Sparse layout) gives back for rows c [..., C]: per tile
    of `tile` columns, scale = 2^ceil(log2(max(amax / 448, 1e-4))) in f32, codes = e4m3(c / scale); returns
    codes * scale."""
    shape = c.shape
    t = c.astype(np.float32).reshape(shape[:-1] + (shape[-1] // tile, tile))
    ratio = np.maximum(np.abs(t).max(axis=-1, keepdims=True) / np.float32(E4M3_MAX), np.float32(1e-4))
    mant, exp = np.frexp(ratio)                                    # ratio = mant * 2^exp, mant in [0.5, 1)
    scale = np.ldexp(np.float32(1), np.where(mant == 0.5, exp - 1, exp)).astype(np.float32)
    return (round_to_e4m3(t / scale) * scale).reshape(shape)


def silu(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + np.exp(-x))


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


# Positions per step of the fused attention kernel's online softmax, and per split of the cache (WarpMma.h
# kFlashChunk, kFlashSplit).
FLASH_CHUNK = 32
FLASH_SPLIT = 256


def flash_attention(scores: np.ndarray, values: np.ndarray, chunk: int = FLASH_CHUNK,
                    split: int = FLASH_SPLIT) -> np.ndarray:
    """softmax(scores) @ values as the fused tensor-core attention computes it. The keys in splits of `split`, each
    on its own: over its chunks a running row max m and sum l (f32, from the unrounded probabilities),
    o += bf16(exp(s - m)) @ values (values already rounded as the kernel reads them), o and l rescaled by
    exp(m_old - m_new) (exponents against 0 while a row has seen no key); then the splits combined,
    sum_s e^(m_s - M) o_s / sum_s e^(m_s - M) l_s. scores [..., T] with -inf where masked (every row sees key 0),
    values [..., T, C]."""
    parts = []
    for s0 in range(0, scores.shape[-1], split):
        m = np.full(scores.shape[:-1], -np.inf, dtype=np.float32)
        l = np.zeros(scores.shape[:-1], dtype=np.float32)
        o = np.zeros(scores.shape[:-1] + values.shape[-1:], dtype=np.float32)
        for t0 in range(s0, min(s0 + split, scores.shape[-1]), chunk):
            s = scores[..., t0:t0 + chunk]
            m_new = np.maximum(m, s.max(-1))
            base = np.where(m_new == -np.inf, np.float32(0), m_new)
            rescale = np.exp(m - base)
            p = np.exp(s - base[..., None])
            l = l * rescale + p.sum(-1)
            o = o * rescale[..., None] + np.matmul(round_to_bf16(p), values[..., t0:t0 + chunk, :])
            m = m_new
        parts.append((m, l, o))
    top = np.max([m for m, _, _ in parts], axis=0)
    weights = [np.exp(m - top) for m, _, _ in parts]
    o = sum(w[..., None] * o for w, (_, _, o) in zip(weights, parts))
    l = sum(w * l for w, (_, l, _) in zip(weights, parts))
    return o / l[..., None]


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    m = np.max(x, axis=axis, keepdims=True)
    e = np.exp(x - m)
    return e / np.sum(e, axis=axis, keepdims=True)


def rms_norm(x: np.ndarray, w: np.ndarray, eps: float) -> np.ndarray:
    var = np.mean(np.square(x), axis=-1, keepdims=True)
    return (x / np.sqrt(var + x.dtype.type(eps))) * w


# ----------------------------------------------------------------------------------------------------------------
# RoPE / YaRN (spec §4)
# ----------------------------------------------------------------------------------------------------------------

def rope_inv_freq(cfg: ModelConfig) -> np.ndarray:
    """Per-pair angular frequencies [dr/2], computed in float32 like the official precompute_freqs_cis."""
    dim = cfg.qk_rope_head_dim
    base = cfg.rope_theta
    freqs = (np.float32(1.0) / (np.float32(base) ** (np.arange(0, dim, 2, dtype=np.float32) / np.float32(dim))))
    y = cfg.rope_scaling
    if y is None:
        return freqs.astype(np.float32)

    def correction_dim(rot: float) -> float:
        return dim * math.log(y.original_max_position_embeddings / (rot * 2 * math.pi)) / (2 * math.log(base))

    low = max(math.floor(correction_dim(y.beta_fast)), 0)
    high = min(math.ceil(correction_dim(y.beta_slow)), dim - 1)
    if low == high:
        high += 0.001  # avoid division by zero, as official linear_ramp_factor does
    ramp = np.clip((np.arange(dim // 2, dtype=np.float32) - np.float32(low)) / np.float32(high - low), 0, 1)
    smooth = (np.float32(1) - ramp).astype(np.float32)
    freqs = freqs / np.float32(y.factor) * (np.float32(1) - smooth) + freqs * smooth
    return freqs.astype(np.float32)


def rope_attention_factor(cfg: ModelConfig) -> float:
    """HF multiplies cos/sin by mscale(factor, mscale)/mscale(factor, mscale_all_dim); 1.0 for V3 and V2-Lite."""
    y = cfg.rope_scaling
    if y is None:
        return 1.0
    return yarn_get_mscale(y.factor, y.mscale) / yarn_get_mscale(y.factor, y.mscale_all_dim)


def rope_cos_sin(cfg: ModelConfig, positions: np.ndarray, dtype) -> Tuple[np.ndarray, np.ndarray]:
    """cos/sin [len(positions), dr/2]: angle = f32(pos * freq) (one f32 rounding, as torch.outer in f32)."""
    freqs = rope_inv_freq(cfg)
    ang = np.outer(positions.astype(np.float32), freqs).astype(np.float32).astype(np.float64)
    f = rope_attention_factor(cfg)
    cos = (np.cos(ang) * f).astype(np.float32).astype(dtype)
    sin = (np.sin(ang) * f).astype(np.float32).astype(dtype)
    return cos, sin


def apply_rope(x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    """Rotate interleaved pairs (x[2i], x[2i+1]) of x [B, S, ..., dr]; cos/sin are [S, dr/2]."""
    shape = x.shape
    xp = x.reshape(shape[:-1] + (shape[-1] // 2, 2))
    extra = x.ndim - 3  # axes between S and dr (the head axis, or none)
    c = cos.reshape(cos.shape[:1] + (1,) * extra + cos.shape[1:])
    s = sin.reshape(sin.shape[:1] + (1,) * extra + sin.shape[1:])
    x0, x1 = xp[..., 0], xp[..., 1]
    out = np.empty_like(xp)
    out[..., 0] = x0 * c - x1 * s
    out[..., 1] = x0 * s + x1 * c
    return out.reshape(shape)


# ----------------------------------------------------------------------------------------------------------------
# KV caches
# ----------------------------------------------------------------------------------------------------------------

class GrowingCache:
    """[B, T, ...] buffer appended along T; capacity doubles so decode is amortised O(1) per token."""

    def __init__(self, batch: int, tail: Tuple[int, ...], dtype):
        self.buf = np.zeros((batch, 16) + tail, dtype=dtype)
        self.len = 0

    def append(self, x: np.ndarray) -> np.ndarray:
        n = x.shape[1]
        if self.len + n > self.buf.shape[1]:
            cap = max(self.buf.shape[1] * 2, self.len + n)
            nb = np.zeros((self.buf.shape[0], cap) + self.buf.shape[2:], dtype=self.buf.dtype)
            nb[:, :self.len] = self.buf[:, :self.len]
            self.buf = nb
        self.buf[:, self.len:self.len + n] = x
        self.len += n
        return self.buf[:, :self.len]


# ----------------------------------------------------------------------------------------------------------------
# model
# ----------------------------------------------------------------------------------------------------------------

class Model:
    """Reference model with a KV cache.

    prefill(tokens [B, S]) resets the cache, runs positions 0..S-1 and returns the last-position logits [B, V];
    decode(tokens [B]) feeds one token per row at the next position and returns logits [B, V].
    forward(tokens [B, S]) continues from the current position (chunked prefill is allowed here)."""

    def __init__(self, checkpoint: str, mla_form: str = "absorbed", dtype=np.float32,
                 config: Optional[ModelConfig] = None, bf16_tensor_core_inputs: bool = False,
                 kv_cache_dtype: str = "f32", mtp: bool = False):
        if mla_form not in MLA_FORMS:
            raise ValueError(f"mla_form must be one of {MLA_FORMS}, got {mla_form!r}")
        if not os.path.exists(checkpoint):
            raise ValueError(f"{checkpoint}: checkpoint directory does not exist")
        self.cfg = config if config is not None else load_config(checkpoint)
        self.mla_form = mla_form
        # Round what the GPU's tensor-core kernels take as bf16 (the inputs of linears with bf16 weights except the
        # router, of the fused MoE expert GEMMs; q, the latent cache and the probabilities of absorbed attention,
        # computed as the fused kernel's online softmax, flash_attention) instead of keeping f32: their numerics,
        # for comparisons.
        self.bf16_tensor_core_inputs = bf16_tensor_core_inputs
        # The compiled cache's element type (dsv3-compile --kv-cache-dtype; the manifest's kv_cache input): what
        # attention reads back is what was stored, so with bf16 every cache entry is rounded when appended. fp8 is
        # FlashMLA's packed layout: the latent quantized per tile, the rope key in bf16 (absorbed form); the naive
        # form's per-head layout quantizes each token's [K | V] row of every head per tile (_store_expanded).
        if kv_cache_dtype not in ("f32", "bf16", "fp8"):
            raise ValueError(f"kv_cache_dtype must be 'f32', 'bf16' or 'fp8', got {kv_cache_dtype!r}")
        self.kv_cache_dtype = kv_cache_dtype
        self.store = round_to_bf16 if kv_cache_dtype == "bf16" else (lambda a: a)
        self.store_latent = self.store
        if kv_cache_dtype == "fp8":
            self.store = round_to_bf16
            self.store_latent = lambda a: quantize_fp8_latent(a, fp8_tile_of(a.shape[-1]))
        self.dtype = np.dtype(dtype)
        cfg = self.cfg
        ckpt = Checkpoint(checkpoint)
        wl = WeightLoader(ckpt, cfg, self.dtype)
        D, V = cfg.hidden_size, cfg.vocab_size
        self.embed = wl.get("model.embed_tokens.weight", (V, D))
        if not wl.has("lm_head.weight") and cfg.tie_word_embeddings:
            self.lm_head = self.embed
        else:
            self.lm_head = wl.get("lm_head.weight", (V, D))
        self.final_norm = wl.get("model.norm.weight", (D,))
        self.layers = [load_layer(wl, cfg, i) for i in range(cfg.num_hidden_layers)]
        # The MTP module (model.layers.<num_hidden_layers>.*), read only with mtp=True: mtp_forward.
        self.mtp: Optional[MtpWeights] = None
        if mtp:
            if cfg.num_nextn_predict_layers < 1:
                raise ValueError("mtp=True needs an MTP layer (num_nextn_predict_layers >= 1)")
            L = cfg.num_hidden_layers
            p = f"model.layers.{L}."
            self.mtp = MtpWeights(embed=wl.get(p + "embed_tokens.weight", (V, D)),
                                  enorm=wl.get(p + "enorm.weight", (D,)), hnorm=wl.get(p + "hnorm.weight", (D,)),
                                  eh_proj=wl.get(p + "eh_proj.weight", (D, 2 * D)), layer=load_layer(wl, cfg, L),
                                  head_norm=wl.get(p + "shared_head.norm.weight", (D,)),
                                  head=wl.get(p + "shared_head.head.weight", (V, D)))
        self.bf16_weights = wl.bf16_ids  # linears whose input the tensor-core kernels round to bf16
        # Which expert GEMMs the compiler puts on tensor cores (gate/up, down): bf16 weights (routed and shared)
        # whose output width is a multiple of 8 and depth of 16 (lib/Conversion/DSV3ToLinalg/WarpMma.h).
        self.expert_tiles = (False, False)
        moe_layers = [i for i in range(cfg.num_hidden_layers) if cfg.is_moe_layer(i)]
        if moe_layers:
            m = f"model.layers.{moe_layers[0]}.mlp."
            names = [m + "experts.0."] + ([m + "shared_experts."] if cfg.n_shared_experts else [])

            def bf16(proj):
                return all(ckpt.info(n + proj + ".weight").dtype == "BF16" for n in names)
            I = cfg.moe_intermediate_size
            self.expert_tiles = (bf16("gate_proj") and bf16("up_proj") and I % 8 == 0 and D % 16 == 0,
                                 bf16("down_proj") and D % 8 == 0 and I % 16 == 0)
        self.softmax_scale = cfg.softmax_scale
        self.batch = 0
        self.pos = 0
        self.caches: List[Tuple[GrowingCache, GrowingCache]] = []
        self.routing: Dict[int, np.ndarray] = {}  # layer -> expert indices [B*S, k] of the last call (debugging)

    # -- public API -----------------------------------------------------------------------------------------------
    def reset(self, batch: int) -> None:
        cfg = self.cfg
        H = cfg.num_attention_heads
        self.batch = batch
        self.pos = 0
        if self.mla_form == "absorbed":
            tails = ((cfg.kv_lora_rank,), (cfg.qk_rope_head_dim,))  # kv_norm(c) latent, roped k_pe
        else:
            tails = ((H, cfg.qk_head_dim), (H, cfg.v_head_dim))      # full per-head K and V
        self.caches = [(GrowingCache(batch, tails[0], self.dtype), GrowingCache(batch, tails[1], self.dtype))
                       for _ in range(len(self.layers) + (self.mtp is not None))]  # the MTP module's last
        self.mtp_pos = 0

    def prefill(self, tokens) -> np.ndarray:
        tokens = np.asarray(tokens)
        if tokens.ndim != 2 or tokens.shape[0] < 1 or tokens.shape[1] < 1:
            raise ValueError(f"prefill expects tokens of shape [B, S] with B, S >= 1, got {tokens.shape}")
        self.reset(tokens.shape[0])
        return self.forward(tokens)

    def decode(self, tokens) -> np.ndarray:
        tokens = np.asarray(tokens)
        if tokens.ndim != 1 or tokens.shape[0] != self.batch:
            raise ValueError(f"decode expects tokens of shape [{self.batch}], got {tokens.shape}")
        return self.forward(tokens[:, None])

    def forward(self, tokens, all_positions: bool = False, return_hidden: bool = False):
        """Run tokens [B, S] at positions pos..pos+S-1; returns float32 logits [B, V] (last position) or
        [B, S, V] when all_positions; with return_hidden also the hidden states after the final norm (the MTP
        module's input), of the same positions."""
        cfg = self.cfg
        tokens = np.asarray(tokens)
        if not np.issubdtype(tokens.dtype, np.integer):
            raise ValueError(f"token ids must be integers, got dtype {tokens.dtype}")
        if tokens.ndim != 2 or tokens.shape[0] != self.batch:
            raise ValueError(f"forward expects tokens [{self.batch}, S] (call prefill first), got {tokens.shape}")
        if tokens.size and (tokens.min() < 0 or tokens.max() >= cfg.vocab_size):
            bad = tokens[(tokens < 0) | (tokens >= cfg.vocab_size)][0]
            raise ValueError(f"token id {int(bad)} out of range [0, {cfg.vocab_size})")
        B, S = tokens.shape
        p0 = self.pos
        if p0 + S > cfg.max_position_embeddings:
            raise ValueError(f"position {p0 + S - 1} exceeds max_position_embeddings {cfg.max_position_embeddings}")
        positions = np.arange(p0, p0 + S)
        cos, sin = rope_cos_sin(cfg, positions, self.dtype)
        h = self.embed[tokens]  # [B, S, D]
        for i, lw in enumerate(self.layers):
            x = rms_norm(h, lw.input_norm, cfg.rms_norm_eps)
            h = h + self._attention(i, lw.attn, x, positions, cos, sin)
            x = rms_norm(h, lw.post_norm, cfg.rms_norm_eps)
            h = h + (self._moe(i, lw.moe, x) if lw.moe is not None else self._dense_mlp(lw.mlp, x))
        self.pos = p0 + S
        if not all_positions:
            h = h[:, -1]
        h = rms_norm(h, self.final_norm, cfg.rms_norm_eps)
        logits = self._linear(h, self.lm_head).astype(np.float32)
        return (logits, h) if return_hidden else logits

    def mtp_forward(self, hidden: np.ndarray, next_tokens) -> np.ndarray:
        """The MTP module at positions mtp_pos..mtp_pos+S-1 (its own cache): position i combines the main model's
        normalised hidden state h_i ([B, S, D], forward(return_hidden=True)) with the embedding of token i+1
        (next_tokens [B, S]); returns float32 logits [B, S, V], each predicting token i+2 (spec §6: embedding first,
        as vLLM concatenates; no zeroing at position 0)."""
        if self.mtp is None:
            raise ValueError("the model was loaded without its MTP module (Model(..., mtp=True))")
        cfg, w = self.cfg, self.mtp
        next_tokens = np.asarray(next_tokens)
        B, S = next_tokens.shape
        eps = cfg.rms_norm_eps
        p0 = self.mtp_pos
        positions = np.arange(p0, p0 + S)
        cos, sin = rope_cos_sin(cfg, positions, self.dtype)
        pair = np.concatenate([rms_norm(w.embed[next_tokens], w.enorm, eps), rms_norm(hidden, w.hnorm, eps)], -1)
        h = self._linear(pair, w.eh_proj)
        L, lw = cfg.num_hidden_layers, w.layer
        x = rms_norm(h, lw.input_norm, eps)
        h = h + self._attention(L, lw.attn, x, positions, cos, sin)
        x = rms_norm(h, lw.post_norm, eps)
        h = h + (self._moe(L, lw.moe, x) if lw.moe is not None else self._dense_mlp(lw.mlp, x))
        self.mtp_pos = p0 + S
        return self._linear(rms_norm(h, w.head_norm, eps), w.head).astype(np.float32)

    # -- attention (spec §3) --------------------------------------------------------------------------------------
    def _attention(self, i: int, w: AttnWeights, x: np.ndarray, positions: np.ndarray,
                   cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
        cfg = self.cfg
        B, S, _ = x.shape
        H, dn, dr, dv, C = (cfg.num_attention_heads, cfg.qk_nope_head_dim, cfg.qk_rope_head_dim,
                            cfg.v_head_dim, cfg.kv_lora_rank)
        if w.q is not None:
            q = self._linear(x, w.q)
        else:
            q = self._linear(rms_norm(self._linear(x, w.q_a), w.q_a_norm, cfg.rms_norm_eps), w.q_b)
        q = q.reshape(B, S, H, dn + dr)
        q_nope, q_pe = q[..., :dn], apply_rope(q[..., dn:], cos, sin)
        kv = self._linear(x, w.kv_a)                                 # [B, S, C + dr]
        c = rms_norm(kv[..., :C], w.kv_a_norm, cfg.rms_norm_eps)     # kv_norm applies to the latent only
        k_pe = apply_rope(kv[..., C:], cos, sin)                     # one RoPE key shared by all heads
        wkv_b = w.kv_b.reshape(H, dn + dv, C)
        cache_a, cache_b = self.caches[i]
        T = positions[-1] + 1
        # Causal mask over absolute positions: query at p sees keys 0..p.
        keep = np.arange(T)[None, :] <= positions[:, None]           # [S, T]

        if self.mla_form == "absorbed":
            lat = cache_a.append(self.store_latent(c))               # [B, T, C]
            pe = cache_b.append(self.store(k_pe))                    # [B, T, dr]
            # Absorb W_UK into the query: q_lat[b,h,s,:] = q_nope[b,s,h,:] @ Wk[h]
            rq = rk = round_to_bf16 if self.bf16_tensor_core_inputs else (lambda a: a)
            # The absorptions run on tensor cores when kv_b is stored as bf16.
            rw = rq if id(w.kv_b) in self.bf16_weights else (lambda a: a)
            q_lat = np.matmul(rw(q_nope.transpose(0, 2, 1, 3)), wkv_b[:, :dn, :])      # [B, H, S, C]
            scores = (np.matmul(rq(q_lat), rk(lat)[:, None].transpose(0, 1, 3, 2))
                      + np.matmul(rq(q_pe.transpose(0, 2, 1, 3)), rk(pe)[:, None].transpose(0, 1, 3, 2)))
            scores = np.where(keep, scores * self.softmax_scale, -np.inf)               # [B, H, S, T]
            if self.bf16_tensor_core_inputs:
                # The fused tensor-core kernel's online softmax: per chunk of FLASH_CHUNK positions, the running
                # row max m and sum l in f32, o += bf16(exp(s - m)) @ bf16(latent), rescaled as m grows.
                o_lat = flash_attention(scores, rk(lat)[:, None])                       # [B, H, S, C]
            else:
                o_lat = np.matmul(softmax(scores), lat[:, None])                        # [B, H, S, C]
            # Absorb W_UV into the output: o[b,h,s,:] = o_lat @ Wv[h]^T
            o = np.matmul(rw(o_lat), wkv_b[:, dn:, :].transpose(0, 2, 1))               # [B, H, S, dv]
        else:
            kvb = self._linear(c, w.kv_b).reshape(B, S, H, dn + dv)
            k = np.concatenate([kvb[..., :dn], np.broadcast_to(k_pe[:, :, None, :], (B, S, H, dr))], axis=-1)
            k_stored, v_stored = self._store_expanded(k, kvb[..., dn:])
            kc = cache_a.append(k_stored)                            # [B, T, H, dq]
            vc = cache_b.append(v_stored)                            # [B, T, H, dv]
            r = round_to_bf16 if self.bf16_tensor_core_inputs else (lambda a: a)
            qf = np.concatenate([q_nope, q_pe], axis=-1).transpose(0, 2, 1, 3)       # [B, H, S, dq]
            scores = np.matmul(r(qf), r(kc).transpose(0, 2, 3, 1)) * self.softmax_scale  # [B, H, S, T]
            p = softmax(np.where(keep, scores, -np.inf))
            o = np.matmul(r(p), r(vc).transpose(0, 2, 1, 3))                           # [B, H, S, dv]
        o = o.transpose(0, 2, 1, 3).reshape(B, S, H * dv)
        return self._linear(o, w.o)

    def _store_expanded(self, k: np.ndarray, v: np.ndarray):
        """What the per-head cache gives back for K [B, S, H, dq] and V [B, S, H, dv]: the compiled layout is one
        row per token of every head's K then V, which FP8 quantizes per tile."""
        if self.kv_cache_dtype != "fp8":
            return self.store(k), self.store(v)
        B, S, H, dq = k.shape
        row = np.concatenate([k, v], axis=-1).reshape(B, S, -1)
        row = quantize_fp8_latent(row, fp8_tile_of(row.shape[-1])).reshape(B, S, H, -1)
        return row[..., :dq], row[..., dq:]

    def _linear(self, x: np.ndarray, weight: np.ndarray) -> np.ndarray:
        """x @ weight.T; with bf16_tensor_core_inputs, x rounded to bf16 first where the weight is stored as bf16
        (the GPU runs those GEMMs on tensor cores)."""
        if self.bf16_tensor_core_inputs and id(weight) in self.bf16_weights:
            x = round_to_bf16(x)
        return x @ weight.T

    def _dense_mlp(self, mlp: MLPWeights, x: np.ndarray) -> np.ndarray:
        bf16 = self.bf16_tensor_core_inputs
        return mlp(x, bf16_inputs=(bf16 and id(mlp.gate) in self.bf16_weights,
                                   bf16 and id(mlp.down) in self.bf16_weights))

    # -- MoE (spec §5) --------------------------------------------------------------------------------------------
    def _moe(self, i: int, w: MoEWeights, x: np.ndarray) -> np.ndarray:
        cfg = self.cfg
        shape = x.shape
        x2 = x.reshape(-1, shape[-1])
        idx, weights = route(cfg, w.gate, w.bias, x2)
        self.routing[i] = idx
        y = np.zeros_like(x2)
        bf16 = self.expert_tiles if self.bf16_tensor_core_inputs else (False, False)
        for e in np.unique(idx):
            rows, slot = np.nonzero(idx == e)  # a token picks an expert at most once, so rows are unique
            y[rows] += w.experts[e](x2[rows], weights[rows, slot], bf16_inputs=bf16)
        if w.shared is not None:
            y = y + w.shared(x2, bf16_inputs=bf16)
        return y.reshape(shape)


def route(cfg: ModelConfig, gate: np.ndarray, bias: Optional[np.ndarray], x: np.ndarray
          ) -> Tuple[np.ndarray, np.ndarray]:
    """Router for tokens x [N, D] -> (expert indices [N, k], mixing weights [N, k]); spec §5.2-5.3."""
    logits = x @ gate.T                                               # [N, E]
    scores = sigmoid(logits) if cfg.scoring_func == "sigmoid" else softmax(logits)
    sel = scores + bias if bias is not None else scores.copy()        # the bias only steers the selection
    N, E = sel.shape
    G = cfg.n_group
    if G > 1:
        g = sel.reshape(N, G, E // G)
        if bias is not None:
            gscore = np.sort(g, axis=-1)[..., -2:].sum(-1)            # sum of the top-2 biased scores
        else:
            gscore = g.max(-1)
        gkeep = topk_indices(gscore, cfg.topk_group)                  # [N, topk_group]
        mask = np.ones((N, G), dtype=bool)
        np.put_along_axis(mask, gkeep, False, axis=1)
        sel = np.where(np.repeat(mask, E // G, axis=1), -np.inf, sel)
    idx = topk_indices(sel, cfg.num_experts_per_tok)
    wts = np.take_along_axis(scores, idx, axis=1)
    if cfg.norm_topk_prob:
        wts = wts / wts.sum(-1, keepdims=True)
    wts = wts * wts.dtype.type(cfg.routed_scaling_factor)
    return idx, wts


def topk_indices(x: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest entries per row, descending; ties go to the lower index."""
    return np.argsort(-x, axis=-1, kind="stable")[..., :k]


# ----------------------------------------------------------------------------------------------------------------
# greedy generation with golden.json semantics
# ----------------------------------------------------------------------------------------------------------------

def greedy_logits(model: Model, tokens: Sequence[int], max_new_tokens: int) -> Tuple[np.ndarray, List[int]]:
    """Row 0: last-position logits after prefilling `tokens` from position 0; row i > 0: logits after feeding the
    greedy token of row i-1 at the next position.  Returns (float32 [1+N, V], greedy token of every row)."""
    rows = [model.prefill(np.asarray([list(tokens)], dtype=np.int64))[0]]
    greedy = [int(np.argmax(rows[0]))]
    for _ in range(max_new_tokens):
        rows.append(model.decode(np.asarray([greedy[-1]], dtype=np.int64))[0])
        greedy.append(int(np.argmax(rows[-1])))
    return np.stack(rows).astype(np.float32), greedy


def _parse_tokens(s: str) -> List[int]:
    try:
        toks = [int(t) for t in s.replace(" ", "").split(",") if t != ""]
    except ValueError:
        raise ValueError(f"--tokens must be comma-separated integers, got {s!r}") from None
    if not toks:
        raise ValueError("--tokens is empty")
    return toks


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m dsv3.reference",
                                 description="numpy reference forward pass: greedy decode, dump logits")
    ap.add_argument("--checkpoint", required=True, help="HF checkpoint dir (config.json + safetensors)")
    ap.add_argument("--tokens", required=True, help="prompt token ids, comma-separated")
    ap.add_argument("--max-new-tokens", type=int, default=0)
    ap.add_argument("--logits-out", help="write float32 .npy [1 + max_new_tokens, vocab]")
    ap.add_argument("--json-out", help="also write a golden.json-style summary")
    ap.add_argument("--mla-form", choices=MLA_FORMS, default="absorbed")
    ap.add_argument("--kv-cache-dtype", choices=("f32", "bf16", "fp8"), default="f32",
                    help="round cache entries as a compiled cache of this type stores them (dsv3-compile's default "
                         "is bf16; fp8: FlashMLA's packed layout); f32 is the official "
                         "implementation's numerics")
    ap.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                    help="compute dtype (float32 matches the golden data)")
    args = ap.parse_args(argv)
    try:
        if args.max_new_tokens < 0:
            raise ValueError("--max-new-tokens must be >= 0")
        tokens = _parse_tokens(args.tokens)
        if not os.path.isdir(args.checkpoint):
            raise ValueError(f"{args.checkpoint}: checkpoint directory does not exist")
        model = Model(args.checkpoint, mla_form=args.mla_form, dtype=np.dtype(args.dtype),
                      kv_cache_dtype=args.kv_cache_dtype)
        V = model.cfg.vocab_size
        for t in tokens:
            if not 0 <= t < V:
                raise ValueError(f"token id {t} out of range [0, {V})")
        logits, greedy = greedy_logits(model, tokens, args.max_new_tokens)
        if args.logits_out:
            np.save(args.logits_out, logits)
        if args.json_out:
            with open(args.json_out, "w", encoding="utf-8") as f:
                json.dump({"tokens": tokens, "max_new_tokens": args.max_new_tokens, "greedy_tokens": greedy,
                           "logits": os.path.basename(args.logits_out) if args.logits_out else None,
                           "logits_shape": list(logits.shape), "mla_form": args.mla_form,
                           "computed_by": "dsv3.reference (numpy, %s)" % args.dtype}, f, indent=1)
                f.write("\n")
    except (ValueError, OSError, KeyError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        print(f"error: {msg}", file=sys.stderr)
        return 1
    print(",".join(str(t) for t in greedy))
    return 0


if __name__ == "__main__":
    sys.exit(main())
