"""HF `config.json` of a DeepSeek-V3-architecture model -> ModelConfig.

Field names follow the HF config (spec §1.2/§1.3).  Missing keys take the defaults of HF's DeepseekV3Config
(which are the 671B values), exactly as transformers would; tiny test configs therefore spell out every key.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Optional, Union


@dataclass(frozen=True)
class YarnConfig:
    factor: float
    original_max_position_embeddings: int
    beta_fast: float = 32.0
    beta_slow: float = 1.0
    mscale: float = 1.0
    mscale_all_dim: float = 0.0  # HF reads rope_scaling.get("mscale_all_dim", 0): absent => no softmax mscale


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int = 129280
    hidden_size: int = 7168
    intermediate_size: int = 18432
    moe_intermediate_size: int = 2048
    num_hidden_layers: int = 61
    first_k_dense_replace: int = 3
    moe_layer_freq: int = 1
    num_attention_heads: int = 128
    n_routed_experts: int = 256        # 0 (JSON null/0) => every layer dense
    n_shared_experts: int = 1          # 0 => no shared expert
    num_experts_per_tok: int = 8
    n_group: int = 8
    topk_group: int = 4
    routed_scaling_factor: float = 2.5
    scoring_func: str = "sigmoid"      # "sigmoid" | "softmax"
    topk_method: str = "noaux_tc"      # "noaux_tc" (selection bias) | "greedy" | "group_limited_greedy"
    norm_topk_prob: bool = True
    q_lora_rank: Optional[int] = 1536  # None => plain q_proj
    kv_lora_rank: int = 512
    qk_nope_head_dim: int = 128
    qk_rope_head_dim: int = 64
    v_head_dim: int = 128
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    rope_scaling: Optional[YarnConfig] = None
    max_position_embeddings: int = 4096
    num_nextn_predict_layers: int = 0
    quantization_config: Optional[Dict[str, Any]] = None
    eos_token_id: Optional[Union[int, List[int]]] = None
    tie_word_embeddings: bool = False

    # -- derived --------------------------------------------------------------------------------------------------
    @property
    def qk_head_dim(self) -> int:
        return self.qk_nope_head_dim + self.qk_rope_head_dim

    def is_moe_layer(self, layer: int) -> bool:
        """HF-RC rule: MoE iff experts exist, layer >= first_k_dense_replace and layer % moe_layer_freq == 0."""
        return (self.n_routed_experts > 0 and layer >= self.first_k_dense_replace
                and layer % self.moe_layer_freq == 0)

    @property
    def uses_router_bias(self) -> bool:
        # The golden data and HF use e_score_correction_bias iff topk_method == "noaux_tc" (the official code's
        # "dim == 7168" rule is a 671B-only shortcut).
        return self.topk_method == "noaux_tc"

    @property
    def fp8_block_size(self) -> List[int]:
        qc = self.quantization_config or {}
        return list(qc.get("weight_block_size", [128, 128]))

    @property
    def softmax_scale(self) -> float:
        """qk_head_dim^-0.5, times mscale^2 under YaRN with a non-zero mscale_all_dim (spec §3.6, HF rule)."""
        scale = self.qk_head_dim ** -0.5
        y = self.rope_scaling
        if y is not None and y.mscale_all_dim:
            m = yarn_get_mscale(y.factor, y.mscale_all_dim)
            scale *= m * m
        return scale

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        if self.rope_scaling is not None:
            d["rope_scaling"] = dict(type="yarn", **asdict(self.rope_scaling))
        return d


def yarn_get_mscale(scale: float, mscale: float = 1.0) -> float:
    return 1.0 if scale <= 1 else 0.1 * mscale * math.log(scale) + 1.0


_INT_FIELDS = ("vocab_size", "hidden_size", "intermediate_size", "moe_intermediate_size", "num_hidden_layers",
               "first_k_dense_replace", "moe_layer_freq", "num_attention_heads", "n_routed_experts",
               "n_shared_experts", "num_experts_per_tok", "n_group", "topk_group", "kv_lora_rank",
               "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim", "max_position_embeddings",
               "num_nextn_predict_layers")


def _parse_rope(d: Dict[str, Any]) -> Optional[YarnConfig]:
    rs = d.get("rope_scaling")
    if rs is None:
        # transformers v5 style: rope_parameters {"rope_type": "yarn"|"default", ...}
        rp = d.get("rope_parameters")
        if isinstance(rp, dict) and rp.get("rope_type", rp.get("type")) not in (None, "default"):
            rs = rp
    if rs is None:
        return None
    if not isinstance(rs, dict):
        raise ValueError(f"rope_scaling must be null or an object, got {rs!r}")
    kind = rs.get("type", rs.get("rope_type"))
    if kind != "yarn":
        raise ValueError(f"unsupported rope_scaling type {kind!r} (only 'yarn' or null)")
    try:
        return YarnConfig(
            factor=float(rs["factor"]),
            original_max_position_embeddings=int(rs["original_max_position_embeddings"]),
            beta_fast=float(rs.get("beta_fast", 32)),
            beta_slow=float(rs.get("beta_slow", 1)),
            mscale=float(rs.get("mscale", 1)),
            mscale_all_dim=float(rs.get("mscale_all_dim", 0) or 0),
        )
    except KeyError as e:
        raise ValueError(f"rope_scaling of type yarn lacks {e.args[0]!r}") from None


def config_from_dict(d: Dict[str, Any]) -> ModelConfig:
    if not isinstance(d, dict):
        raise ValueError("config must be a JSON object")
    defaults = ModelConfig()
    kw: Dict[str, Any] = {}
    for name in ModelConfig.__dataclass_fields__:
        if name == "rope_scaling":
            continue
        kw[name] = d.get(name, getattr(defaults, name))
    # JSON null means "absent" for the expert counts (HF: n_routed_experts None => dense model).
    for name in ("n_routed_experts", "n_shared_experts", "num_experts_per_tok", "moe_layer_freq", "n_group",
                 "topk_group"):
        if kw[name] is None:
            kw[name] = {"moe_layer_freq": 1, "n_group": 1, "topk_group": 1}.get(name, 0)
    if kw["q_lora_rank"] in (0,):
        kw["q_lora_rank"] = None  # official q_lora_rank == 0 <=> HF null
    if "rope_theta" not in d and isinstance(d.get("rope_parameters"), dict):
        kw["rope_theta"] = d["rope_parameters"].get("rope_theta", defaults.rope_theta)
    for name in _INT_FIELDS:
        v = kw[name]
        if not (isinstance(v, int) and not isinstance(v, bool)) or v < 0:
            raise ValueError(f"config field {name!r} must be a non-negative integer, got {v!r}")
    if kw["q_lora_rank"] is not None and (not isinstance(kw["q_lora_rank"], int) or kw["q_lora_rank"] < 0):
        raise ValueError(f"config field 'q_lora_rank' must be null or a positive integer, got {kw['q_lora_rank']!r}")
    for name in ("routed_scaling_factor", "rms_norm_eps", "rope_theta"):
        kw[name] = float(kw[name])
    kw["norm_topk_prob"] = bool(kw["norm_topk_prob"])
    kw["rope_scaling"] = _parse_rope(d)
    cfg = ModelConfig(**kw)
    _validate(cfg)
    return cfg


def _validate(c: ModelConfig) -> None:
    def need(cond: bool, msg: str) -> None:
        if not cond:
            raise ValueError(f"invalid config: {msg}")

    for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "kv_lora_rank",
                 "v_head_dim", "moe_layer_freq"):
        need(getattr(c, name) > 0, f"{name} must be positive")
    need(c.qk_rope_head_dim % 2 == 0, "qk_rope_head_dim must be even (RoPE rotates pairs)")
    need(c.scoring_func in ("sigmoid", "softmax"), f"unknown scoring_func {c.scoring_func!r}")
    if c.n_routed_experts > 0 and any(c.is_moe_layer(i) for i in range(c.num_hidden_layers)):
        need(c.moe_intermediate_size > 0, "moe_intermediate_size must be positive")
        need(1 <= c.num_experts_per_tok <= c.n_routed_experts, "need 1 <= num_experts_per_tok <= n_routed_experts")
        need(c.n_group >= 1 and c.n_routed_experts % c.n_group == 0, "n_routed_experts must be divisible by n_group")
        need(1 <= c.topk_group <= c.n_group, "need 1 <= topk_group <= n_group")
        need(c.num_experts_per_tok <= c.topk_group * (c.n_routed_experts // c.n_group),
             "num_experts_per_tok exceeds the experts in the selected groups")
        if c.uses_router_bias and c.n_group > 1:
            need(c.n_routed_experts // c.n_group >= 2, "noaux_tc group score needs >= 2 experts per group")
    if c.quantization_config is not None:
        bs = c.fp8_block_size
        need(len(bs) == 2 and all(isinstance(b, int) and b > 0 for b in bs), "bad weight_block_size")


def load_config(path: str) -> ModelConfig:
    """Load config.json (path to the file or to the checkpoint directory)."""
    if os.path.isdir(path):
        path = os.path.join(path, "config.json")
    try:
        with open(path, "r", encoding="utf-8") as f:
            d = json.load(f)
    except OSError as e:
        raise ValueError(f"{path}: cannot read config: {e.strerror or e}") from e
    except ValueError as e:
        raise ValueError(f"{path}: invalid JSON: {e}") from e
    try:
        return config_from_dict(d)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from e
