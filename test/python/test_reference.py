"""Reference forward pass: golden reproduction, MLA naive == absorbed, cache/batch consistency, router, FP8."""

import dataclasses
import math

import numpy as np
import pytest

from conftest import GOLDEN_CASES, load_golden
from dsv3 import reference as R
from dsv3.config import config_from_dict, load_config
from dsv3.safetensors_io import Checkpoint, fp8_e4m3_to_f32

REL_TOL = 1e-4  # max|Δlogit| <= REL_TOL * max|logit|


@pytest.mark.parametrize("form", R.MLA_FORMS)
@pytest.mark.parametrize("case", GOLDEN_CASES)
def test_golden(case, form):
    d, g, ref = load_golden(case)
    model = R.Model(d, mla_form=form)
    logits, greedy = R.greedy_logits(model, g["tokens"], g["max_new_tokens"])
    assert logits.dtype == np.float32 and list(logits.shape) == g["logits_shape"]
    assert greedy == g["greedy_tokens"]
    ratio = np.abs(logits - ref).max() / np.abs(ref).max()
    assert ratio <= REL_TOL, f"{case}/{form}: max|Δ|/max|logit| = {ratio:.3e}"


def test_golden_sensitivity():
    """The golden data really pins the numerics choices: dropping the YaRN softmax mscale, the router bias or
    the top-k renormalisation each breaks tiny-v3 far beyond the tolerance."""
    d, g, ref = load_golden("tiny-v3")
    base = load_config(d)
    for change in (dict(topk_method="greedy"), dict(norm_topk_prob=False), dict(n_group=1, topk_group=1)):
        m = R.Model(d, config=dataclasses.replace(base, **change))
        logits, _ = R.greedy_logits(m, g["tokens"], g["max_new_tokens"])
        assert np.abs(logits - ref).max() / np.abs(ref).max() > 100 * REL_TOL, change
    m = R.Model(d)
    m.softmax_scale = base.qk_head_dim ** -0.5
    logits, _ = R.greedy_logits(m, g["tokens"], g["max_new_tokens"])
    assert np.abs(logits - ref).max() / np.abs(ref).max() > 100 * REL_TOL


def test_softmax_scale_v3():
    # spec §3.6: 192^-0.5 * (0.1 ln 40 + 1)^2 for the 671B config
    from dsv3.generate_model import preset_config
    cfg = config_from_dict(preset_config("deepseek-v3-671b"))
    assert math.isclose(cfg.softmax_scale, 0.1352337788608801, rel_tol=1e-14)


def test_yarn_freqs_match_spec_table():
    """spec §4.1 table (dim 64, factor 40): a few float32 YaRN frequencies."""
    from dsv3.generate_model import preset_config
    cfg = config_from_dict(preset_config("deepseek-v3-671b"))
    f = R.rope_inv_freq(cfg)
    want = {0: 1.0, 10: 5.623412877e-02, 11: 3.900692612e-02, 16: 5.500000436e-03, 22: 1.778279402e-04,
            23: 3.333803761e-05, 31: 3.333803761e-06}
    for i, v in want.items():
        assert math.isclose(float(f[i]), v, rel_tol=2e-7), (i, float(f[i]), v)


def _generate_run(model, toks, steps):
    out = [model.prefill(toks)]
    nxt = out[-1].argmax(-1)
    for _ in range(steps):
        out.append(model.decode(nxt))
        nxt = out[-1].argmax(-1)
    return np.stack(out)


def test_naive_equals_absorbed_on_variants(variant_checkpoints):
    """Batch 2, prefill 60 tokens, decode 8 (positions up to 67) in both MLA forms, every variant config."""
    rng = np.random.default_rng(7)
    for name, d in sorted(variant_checkpoints.items()):
        cfg = load_config(d)
        toks = rng.integers(0, cfg.vocab_size, size=(2, 60))
        a = _generate_run(R.Model(d, mla_form="absorbed"), toks, 8)
        n = _generate_run(R.Model(d, mla_form="naive"), toks, 8)
        assert a.shape == (9, 2, cfg.vocab_size)
        ratio = np.abs(a - n).max() / np.abs(a).max()
        assert ratio <= REL_TOL, f"{name}: {ratio:.3e}"
        assert np.array_equal(a.argmax(-1), n.argmax(-1)), name
        # non-degenerate logits
        assert 0.3 < a.std() < 30 and np.all(np.isfinite(a)), name


def test_naive_equals_absorbed_float64(variant_checkpoints):
    d = variant_checkpoints["v-ne-nope"]
    toks = np.random.default_rng(3).integers(0, 96, size=(2, 20))
    a = _generate_run(R.Model(d, mla_form="absorbed", dtype=np.float64), toks, 3)
    n = _generate_run(R.Model(d, mla_form="naive", dtype=np.float64), toks, 3)
    assert np.abs(a - n).max() <= 1e-11 * np.abs(a).max()


@pytest.mark.parametrize("form", R.MLA_FORMS)
def test_cache_and_batch_consistency(variant_checkpoints, form):
    """Decoding with the cache equals recomputing from scratch; chunked forward equals one prefill; each batch
    row equals running that row alone."""
    d = variant_checkpoints["sigmoid-groups-bias"]
    rng = np.random.default_rng(11)
    toks = rng.integers(0, 96, size=(2, 12))
    m = R.Model(d, mla_form=form, dtype=np.float64)
    full = m.prefill(toks[:, :12])
    m.prefill(toks[:, :9])
    for t in range(9, 12):
        step = m.decode(toks[:, t])
    assert np.allclose(step, full, rtol=0, atol=1e-10 * np.abs(full).max())
    m.prefill(toks[:, :5])
    chunk = m.forward(toks[:, 5:], all_positions=True)
    assert chunk.shape == (2, 7, 96)
    assert np.allclose(chunk[:, -1], full, rtol=0, atol=1e-10 * np.abs(full).max())
    for b in range(2):
        single = m.prefill(toks[b:b + 1])
        assert np.allclose(single[0], full[b], rtol=0, atol=1e-10 * np.abs(full).max())


def test_mtp_layer_is_ignored(variant_checkpoints):
    d = variant_checkpoints["with-mtp-layer"]
    cfg = load_config(d)
    assert any(k.startswith(f"model.layers.{cfg.num_hidden_layers}.") for k in Checkpoint(d).keys())
    assert len(R.Model(d).layers) == cfg.num_hidden_layers


def test_layer_kinds(variant_checkpoints):
    m = R.Model(variant_checkpoints["moe-layer-freq-2"])
    assert [lw.moe is not None for lw in m.layers] == [True, False, True]
    m = R.Model(variant_checkpoints["dense-null-experts"])
    assert all(lw.moe is None for lw in m.layers)
    m = R.Model(variant_checkpoints["no-q-lora"])
    assert m.layers[0].attn.q is not None and m.layers[0].attn.q_a is None


# ------------------------------------------------------------------------------------------------ router --------

def _router_cfg(**kw):
    base = dict(vocab_size=8, hidden_size=4, intermediate_size=4, moe_intermediate_size=4, num_hidden_layers=1,
                first_k_dense_replace=0, num_attention_heads=1, n_routed_experts=8, n_shared_experts=0,
                num_experts_per_tok=2, n_group=4, topk_group=2, routed_scaling_factor=2.0,
                scoring_func="sigmoid", topk_method="noaux_tc", norm_topk_prob=True, q_lora_rank=None,
                kv_lora_rank=4, qk_nope_head_dim=2, qk_rope_head_dim=2, v_head_dim=2)
    base.update(kw)
    return config_from_dict(base)


def _route_scores(cfg, logits, bias=None):
    # identity gate on one-hot-ish inputs: x = logits row, gate = I (hidden = n_experts)
    E = logits.shape[1]
    return R.route(dataclasses.replace(cfg, hidden_size=E), np.eye(E), bias, logits)


def test_router_group_limited_with_bias():
    cfg = _router_cfg()
    inv = lambda p: np.log(p / (1 - p))  # logits giving these sigmoid scores
    s = np.array([[0.95, 0.10, 0.60, 0.55, 0.50, 0.52, 0.20, 0.20]])
    # groups: {0,1} top2-sum 1.05, {2,3} 1.15, {4,5} 1.02, {6,7} 0.40 -> groups 1 and 0 survive
    idx, w = _route_scores(cfg, inv(s), bias=np.zeros(8))
    assert list(idx[0]) == [0, 2]
    assert np.allclose(w[0], 2.0 * np.array([0.95, 0.60]) / 1.55)
    # a bias steers selection (and group scores) but not the weights
    bias = np.array([0, 0, 0, 0, 0.3, 0.3, 0, 0])
    idx, w = _route_scores(cfg, inv(s), bias=bias)
    # biased group scores: {4,5} 1.62, {2,3} 1.15, {0,1} 1.05 -> group {0,1} is masked, so the best single
    # expert (0) is not eligible; expert 5 (biased 0.82) beats 4 (0.80)
    assert list(idx[0]) == [5, 4]
    assert np.allclose(w[0], 2.0 * np.array([0.52, 0.50]) / 1.02)


def test_router_softmax_no_norm_and_max_group_score():
    cfg = _router_cfg(scoring_func="softmax", topk_method="group_limited_greedy", norm_topk_prob=False,
                      routed_scaling_factor=1.0)
    logits = np.log(np.array([[0.30, 0.01, 0.20, 0.19, 0.10, 0.10, 0.05, 0.05]]))
    idx, w = _route_scores(cfg, logits)
    # no bias -> group score is the max: {0,1}=.30, {2,3}=.20 survive; top-2 = 0, 2
    assert list(idx[0]) == [0, 2]
    assert np.allclose(w[0], [0.30, 0.20])  # unnormalised softmax probabilities


# ------------------------------------------------------------------------------------------------ FP8 -----------

def test_fp8_dequant_partial_blocks_against_loop():
    d, _, _ = load_golden("tiny-v3-fp8")
    ck = Checkpoint(d)
    name = "model.layers.0.mlp.down_proj.weight"  # [320, 448] -> scales [3, 4], partial in both dims
    codes = ck.raw(name)
    s = ck.get(name + "_scale_inv")
    assert s.shape == (3, 4)
    w = R.dequant_fp8_block(fp8_e4m3_to_f32(codes), s, (128, 128))
    want = np.empty(codes.shape, np.float32)
    for i in range(codes.shape[0]):
        for j in range(0, codes.shape[1], 64):
            want[i, j:j + 64] = fp8_e4m3_to_f32(codes[i, j:j + 64]) * s[i // 128, j // 128]
    assert np.array_equal(w, want)


def test_bad_token_and_shape_errors(variant_checkpoints):
    m = R.Model(variant_checkpoints["base-v3"])
    with pytest.raises(ValueError, match="out of range"):
        m.prefill([[1, 96]])
    with pytest.raises(ValueError, match="prefill expects"):
        m.prefill([1, 2])
    m.prefill([[1, 2], [3, 4]])
    with pytest.raises(ValueError, match="decode expects"):
        m.decode([1])
    with pytest.raises(ValueError, match="mla_form"):
        R.Model(variant_checkpoints["base-v3"], mla_form="flash")
