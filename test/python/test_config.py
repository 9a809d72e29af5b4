"""config.json parsing."""

import math

import pytest

from conftest import GOLDEN_CASES, GOLDEN_DIR
from dsv3.config import config_from_dict, load_config
from dsv3.generate_model import preset_config


def test_golden_configs_parse():
    v3 = load_config(f"{GOLDEN_DIR}/tiny-v3")
    assert v3.q_lora_rank == 64 and v3.uses_router_bias and v3.rope_scaling.factor == 40
    assert v3.qk_head_dim == 24 and [v3.is_moe_layer(i) for i in range(3)] == [False, True, True]
    v2 = load_config(f"{GOLDEN_DIR}/tiny-v2lite")
    assert v2.q_lora_rank is None and v2.rope_scaling is None and not v2.uses_router_bias
    assert v2.softmax_scale == 24 ** -0.5
    fp8 = load_config(f"{GOLDEN_DIR}/tiny-v3-fp8")
    assert fp8.fp8_block_size == [128, 128]
    for case in GOLDEN_CASES:
        load_config(f"{GOLDEN_DIR}/{case}/config.json")  # the file path works too


def test_nulls_and_alternate_spellings():
    c = preset_config("tiny")
    c.update(n_routed_experts=None, n_shared_experts=None, q_lora_rank=0)
    cfg = config_from_dict(c)
    assert cfg.n_routed_experts == 0 and not any(cfg.is_moe_layer(i) for i in range(3))
    assert cfg.q_lora_rank is None
    c = preset_config("tiny")
    rs = c.pop("rope_scaling")
    c.pop("rope_theta")
    c["rope_parameters"] = dict(rs, rope_type="yarn", rope_theta=50000.0)
    del c["rope_parameters"]["type"]
    cfg = config_from_dict(c)
    assert cfg.rope_scaling is not None and cfg.rope_theta == 50000.0
    # without mscale_all_dim there is no softmax mscale (HF reads it with default 0)
    c = preset_config("tiny")
    del c["rope_scaling"]["mscale_all_dim"]
    assert math.isclose(config_from_dict(c).softmax_scale, 24 ** -0.5)


@pytest.mark.parametrize("change,pattern", [
    (dict(scoring_func="relu"), "scoring_func"),
    (dict(rope_scaling={"type": "linear", "factor": 2}), "rope_scaling type"),
    (dict(rope_scaling={"type": "yarn", "factor": 2}), "original_max_position_embeddings"),
    (dict(hidden_size=-1), "hidden_size"),
    (dict(n_group=3), "divisible"),
    (dict(num_experts_per_tok=9), "num_experts_per_tok"),
    (dict(qk_rope_head_dim=7), "even"),
])
def test_invalid_configs(change, pattern):
    c = preset_config("tiny")
    c.update(change)
    with pytest.raises(ValueError, match=pattern):
        config_from_dict(c)


def test_missing_config_file(tmp_path):
    with pytest.raises(ValueError, match="cannot read config"):
        load_config(str(tmp_path))
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="invalid JSON"):
        load_config(str(tmp_path))
