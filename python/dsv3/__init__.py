"""Pure-Python (numpy) tooling for the dsv3 compiler project.

Modules:
  safetensors_io  strict safetensors reader/writer, bf16 and FP8 e4m3fn codecs,
                  single-file and sharded checkpoint directories.
  config          HF config.json -> ModelConfig dataclass.
  reference       float32 numpy reference forward pass (MLA naive/absorbed, MoE, YaRN).
  generate_model  random DeepSeek-V3-architecture checkpoints for tests and benchmarks.

Only numpy is required.  Run modules with PYTHONPATH=python /usr/bin/python3 -m dsv3.<module>.
"""

__all__ = ["safetensors_io", "config", "reference", "generate_model"]
