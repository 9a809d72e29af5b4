//===- CpuFeatures.h - Does this CPU run an artifact's code? ----*- C++ -*-===//
//
// An artifact compiled for, say, znver5 with avx512bf16 dies with SIGILL on a
// CPU without it, at some arbitrary instruction in the middle of a forward
// pass. The runtime therefore checks the manifest's target before loading the
// library: architecture and OS of the triple, and every listed feature
// against the flags the kernel reports in /proc/cpuinfo.
//
// Feature names are LLVM's ("avx512bf16", "sse4.2", "amx-tile"); the table in
// CpuFeatures.cpp maps them to cpuinfo's spelling ("avx512_bf16", "sse4_2",
// "amx_tile"). Tuning-only features ("fast-*", "slow-*", "tuning-*", ...)
// describe no instructions and are skipped; "-feature" entries (disabled) need
// nothing. An ISA name the table does not know is refused: running code that
// may use it is the crash this check exists to prevent.
//
//===----------------------------------------------------------------------===//

#ifndef DSV3_RUNTIME_CPUFEATURES_H
#define DSV3_RUNTIME_CPUFEATURES_H

#include "dsv3/Runtime/Manifest.h"

#include <set>
#include <string>
#include <vector>

namespace dsv3 {
namespace runtime {

/// The CPU flags of this machine (the "flags"/"Features" line of
/// /proc/cpuinfo). Empty if it cannot be read.
std::set<std::string> hostCpuFlags();

/// "" if every feature in `features` is among `hostFlags`; otherwise one
/// line naming the missing features.
std::string checkCpuFeatures(const std::vector<std::string> &features,
                             const std::set<std::string> &hostFlags);

/// The architecture this runtime was built for, in triple spelling
/// ("x86_64", "aarch64").
const char *hostArch();

/// Checks kind, triple (architecture and OS) and features of `target`
/// against this machine; "" or one error line.
std::string checkTarget(const TargetSpec &target);

} // namespace runtime
} // namespace dsv3

#endif // DSV3_RUNTIME_CPUFEATURES_H
