//===- ToolCommandLine.h - Command lines of the runtime tools ---*- C++ -*-===//
//
// The conventions dsv3-run and dsv3-serve share: one positional argument
// (the artifact directory), flags (--name), options with a value (--name V or
// --name=V), -h/--help printing the usage, and every error as one line
// "TOOL: error: ..." with exit status 1. Header-only and free of LLVM: these
// tools ship to machines without it (LLVM's CommandLine is dsv3-compile's).
//
//===----------------------------------------------------------------------===//

#ifndef DSV3_TOOLS_COMMON_TOOLCOMMANDLINE_H
#define DSV3_TOOLS_COMMON_TOOLCOMMANDLINE_H

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <initializer_list>
#include <string>

namespace dsv3 {
namespace tools {

class ToolCommandLine {
public:
  ToolCommandLine(const char *tool, const char *usage)
      : tool(tool), usage(usage) {}

  [[noreturn]] void fatal(const std::string &message) const {
    std::fprintf(stderr, "%s: error: %s\n", tool, message.c_str());
    std::exit(1);
  }

  /// `text` as an integer in [min, max], or a fatal error naming `what`.
  int64_t parseInt(const std::string &text, const std::string &what,
                   int64_t min, int64_t max) const {
    errno = 0;
    char *end = nullptr;
    long long value = std::strtoll(text.c_str(), &end, 10);
    if (text.empty() || *end != '\0' || errno == ERANGE || value < min ||
        value > max)
      fatal(what + " must be an integer in [" + std::to_string(min) + ", " +
            std::to_string(max) + "], got '" + text + "'");
    return value;
  }

  /// Walks argv: the positional argument into `artifact` (given twice: an
  /// error), each of `flags` to onFlag, each of `valueOptions` with its value
  /// to onValue, anything else an "unknown option" error.
  void parse(int argc, char **argv, std::string &artifact,
             std::initializer_list<const char *> flags,
             std::initializer_list<const char *> valueOptions,
             const std::function<void(const std::string &)> &onFlag,
             const std::function<void(const std::string &,
                                      const std::string &)> &onValue) const {
    auto listed = [](std::initializer_list<const char *> names,
                     const std::string &arg) {
      return std::find_if(names.begin(), names.end(), [&](const char *n) {
               return arg == n;
             }) != names.end();
    };
    for (int i = 1; i < argc; ++i) {
      std::string arg = argv[i];
      if (arg == "-h" || arg == "--help") {
        std::fputs(usage, stdout);
        std::exit(0);
      }
      if (arg.size() < 2 || arg.compare(0, 2, "--") != 0) {
        if (!artifact.empty())
          fatal("more than one artifact directory given ('" + artifact +
                "', '" + arg + "'); see --help");
        artifact = arg;
        continue;
      }
      if (listed(flags, arg)) {
        onFlag(arg);
        continue;
      }
      std::string value;
      size_t eq = arg.find('=');
      if (eq != std::string::npos) {
        value = arg.substr(eq + 1);
        arg = arg.substr(0, eq);
      }
      if (!listed(valueOptions, arg))
        fatal("unknown option '" + arg + "'; see --help");
      if (eq == std::string::npos) {
        if (i + 1 >= argc)
          fatal(arg + " needs a value; see --help");
        value = argv[++i];
      }
      onValue(arg, value);
    }
    if (artifact.empty())
      fatal("no artifact directory given; see --help");
  }

private:
  const char *tool;
  const char *usage;
};

} // namespace tools
} // namespace dsv3

#endif // DSV3_TOOLS_COMMON_TOOLCOMMANDLINE_H
