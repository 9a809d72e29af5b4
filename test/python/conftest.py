"""Shared fixtures for the dsv3 Python tests.

Run: cd /work/main && PYTHONPATH=python /usr/bin/python3 -m pytest -q test/python
(the python/ directory is also put on sys.path here, so plain `pytest test/python` works too)."""

import json
import os
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PYDIR = os.path.join(ROOT, "python")
if PYDIR not in sys.path:
    sys.path.insert(0, PYDIR)

GOLDEN_DIR = os.path.join(ROOT, "test", "data", "golden")
GOLDEN_CASES = ["tiny-v3", "tiny-v2lite", "tiny-v3-fp8"]


def load_golden(case):
    d = os.path.join(GOLDEN_DIR, case)
    with open(os.path.join(d, "golden.json"), encoding="utf-8") as f:
        g = json.load(f)
    return d, g, np.load(os.path.join(d, g["logits"]))


def subprocess_env():
    """Environment for running `python3 -m dsv3.*` in a child process."""
    env = dict(os.environ)
    env["PYTHONPATH"] = PYDIR + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


@pytest.fixture(scope="session")
def variant_checkpoints(tmp_path_factory):
    """Every config of generate_model.variant_configs() written once per session: {name: dir}."""
    from dsv3.generate_model import generate_checkpoint, variant_configs

    base = tmp_path_factory.mktemp("variants")
    out = {}
    for i, (name, v) in enumerate(sorted(variant_configs().items())):
        out[name] = generate_checkpoint(v["config"], str(base / name), seed=100 + i, dtype=v["dtype"])
    return out
