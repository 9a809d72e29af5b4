# -*- Python -*-
# lit configuration for the dsv3 IR-level tests.

import os

import lit.formats
from lit.llvm import llvm_config
from lit.llvm.subst import ToolSubst

config.name = "DSV3"
config.test_format = lit.formats.ShTest(not llvm_config.use_lit_shell)
config.suffixes = [".mlir", ".test"]
config.excludes = ["CMakeLists.txt", "lit.cfg.py", "lit.site.cfg.py", "Inputs", "python", "Model", "data"]
config.test_source_root = os.path.dirname(__file__)
config.test_exec_root = os.path.join(config.dsv3_obj_root, "test")

config.substitutions.append(("%PATH%", config.environment["PATH"]))
config.substitutions.append(("%dsv3_src_root", config.dsv3_src_root))
config.substitutions.append(("%dsv3_obj_root", config.dsv3_obj_root))
config.substitutions.append(("%test_data", os.path.join(config.dsv3_src_root, "test", "data")))
config.environment["PYTHONPATH"] = os.path.join(config.dsv3_src_root, "python")

llvm_config.with_system_environment(["HOME", "INCLUDE", "LIB", "TMP", "TEMP"])
llvm_config.use_default_substitutions()

tool_dirs = [config.dsv3_tools_dir, config.llvm_tools_dir]
tools = ["dsv3-opt", "dsv3-compile", "dsv3-run", "not", "count", "FileCheck", ToolSubst("%python", "/usr/bin/python3", unresolved="ignore")]
llvm_config.add_tool_substitutions(tools, tool_dirs)

# GPU code generation needs ptxas from the CUDA toolkit; tests that produce a
# cubin say `REQUIRES: cuda-toolkit`.
if config.enable_cuda and os.path.exists(os.path.join(config.cuda_root, "bin", "ptxas")):
    config.available_features.add("cuda-toolkit")
    config.environment["CUDA_ROOT"] = config.cuda_root
