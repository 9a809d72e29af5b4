"""GPU artifacts (dsv3-compile --target cuda) on a machine without a GPU.

What can be checked here, and is: the artifact is complete (cubins assembled by ptxas for the requested chip and
embedded in the library, the manifest says cuda and the chip, the host code calls the runtime's mgpu* functions and
needs no OpenMP, no CUDA library is linked), and running it without a CUDA driver is one clear error line and a
non-zero exit, from dsv3-run and from the Python bindings. Whether the kernels compute the right numbers is checked
by test_gpu_tiled_on_cpu.py (their tiled form, on the CPU) and on a GPU machine by scripts/gpu-check.sh.
"""

import ctypes
import json
import os
import subprocess

import pytest

from conftest import load_golden
from test_compiled_model import BIN

CUDA_ROOT = os.environ.get("CUDA_ROOT", "/usr/local/cuda")


def has_cuda_driver():
    try:
        ctypes.CDLL("libcuda.so.1")
        return True
    except OSError:
        return False


pytestmark = [
    pytest.mark.skipif(not os.path.exists(os.path.join(CUDA_ROOT, "bin", "ptxas")),
                       reason="GPU code generation needs ptxas from the CUDA toolkit"),
    pytest.mark.skipif(has_cuda_driver(), reason="these tests check the behaviour without a CUDA driver"),
]


def compile_cuda(tmp_path, *extra):
    ckpt, _, _ = load_golden("tiny-v3")
    out = tmp_path / "artifact"
    done = subprocess.run([os.path.join(BIN, "dsv3-compile"), ckpt, "-o", str(out), "--max-seq-len", "64",
                           "--target", "cuda", *extra], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return ckpt, out


@pytest.fixture(scope="module")
def sm90_artifact(tmp_path_factory):
    return compile_cuda(tmp_path_factory.mktemp("sm90"))


def test_artifact_holds_the_kernels_and_calls_the_runtime(sm90_artifact):
    _, artifact = sm90_artifact
    manifest = json.load(open(artifact / "manifest.json"))
    assert manifest["target"]["kind"] == "cuda"
    assert manifest["target"]["chip"] == "sm_90a"
    # Portable host code: the GPU machine's CPU need not be this one.
    assert manifest["target"]["cpu"] == "x86-64-v3"
    assert sorted(os.listdir(artifact)) == ["libdsv3model.so", "manifest.json"]  # no libomp
    library = str(artifact / "libdsv3model.so")
    undefined = subprocess.run(["nm", "-D", "--undefined-only", library], capture_output=True, text=True,
                               check=True).stdout
    for symbol in ["mgpuModuleLoad", "mgpuModuleGetFunction", "mgpuLaunchKernel", "mgpuMemAlloc", "mgpuMemFree"]:
        assert symbol in undefined
    assert "omp_" not in undefined
    ldd = subprocess.run(["ldd", library], capture_output=True, text=True, check=True).stdout
    assert "libcuda" not in ldd and "libomp" not in ldd
    # The cubins are embedded: one ELF image per kernel, for sm_90a.
    data = open(library, "rb").read()
    assert data.count(b"\x7fELF") > 50
    assert b"sm_90a" in data
    assert b"mla_0" in data and b"moe_gate_up_0" in data


def test_sm80_artifact(tmp_path):
    _, artifact = compile_cuda(tmp_path, "--chip", "sm_80")
    assert json.load(open(artifact / "manifest.json"))["target"]["chip"] == "sm_80"


@pytest.mark.parametrize("args,message", [
    (["--target", "cuda", "--chip", "sm_75"], "--chip must be sm_90a or sm_80, got 'sm_75'"),
    (["--target", "cuda", "--gpu-tiled-on-cpu"], "--gpu-tiled-on-cpu compiles for the CPU: use it with --target=cpu"),
    (["--threads-per-block", "0"], "--threads-per-block must be in [1, 1024], got 0"),
])
def test_bad_gpu_options_are_one_error_line(args, message, tmp_path):
    ckpt, _, _ = load_golden("tiny-v3")
    done = subprocess.run([os.path.join(BIN, "dsv3-compile"), ckpt, "-o", str(tmp_path / "a"), *args],
                          capture_output=True, text=True)
    assert done.returncode == 1
    assert done.stderr == f"dsv3-compile: error: {message}\n"


def test_running_without_a_driver_is_one_error_line(sm90_artifact):
    ckpt, artifact = sm90_artifact
    for device in [[], ["--device", "cuda"]]:
        done = subprocess.run([os.path.join(BIN, "dsv3-run"), str(artifact), "--weights", ckpt, "--tokens", "1,2,3",
                               *device], capture_output=True, text=True)
        assert done.returncode == 1
        assert done.stdout == ""
        lines = done.stderr.splitlines()
        assert len(lines) == 1, done.stderr
        assert lines[0].startswith("dsv3-run: error: no CUDA driver on this machine: cannot load libcuda.so.1")


def test_cpu_device_refuses_a_gpu_artifact(sm90_artifact):
    ckpt, artifact = sm90_artifact
    done = subprocess.run([os.path.join(BIN, "dsv3-run"), str(artifact), "--weights", ckpt, "--tokens", "1,2,3",
                           "--device", "cpu"], capture_output=True, text=True)
    assert done.returncode == 1
    assert done.stderr == (f"dsv3-run: error: {artifact}: the artifact was compiled for NVIDIA GPUs (sm_90a); run it "
                           "with the cuda device (dsv3-run --device cuda)\n")


def test_python_bindings_report_the_missing_driver(sm90_artifact):
    from dsv3.runtime import Runtime, artifact_info
    ckpt, artifact = sm90_artifact
    assert artifact_info(str(artifact))["device"] == 1
    with pytest.raises(RuntimeError, match="no CUDA driver on this machine"):
        Runtime(str(artifact), ckpt)
