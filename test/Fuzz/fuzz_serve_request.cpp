//===- fuzz_serve_request.cpp - libFuzzer harness of dsv3-serve's parser --===//
//
// dsv3::serve::parseRequest (tools/dsv3-serve/Api.cpp) on arbitrary bodies,
// for the endpoint the first byte selects. It must return either an error
// or a request, never throw or crash; the error's JSON (what the server
// sends) must serialise the way dsv3-serve does it.
//
//===----------------------------------------------------------------------===//

#include "Api.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

using namespace dsv3::serve;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0)
    return 0;
  Endpoint endpoint =
      data[0] & 1 ? Endpoint::ChatCompletions : Endpoint::Completions;
  std::string body(reinterpret_cast<const char *>(data + 1), size - 1);
  ParsedRequest request;
  std::optional<ApiError> error = parseRequest(endpoint, body, request);
  if (error) {
    if (error->status < 400 || error->status > 599 || error->message.empty()) {
      std::fprintf(stderr, "dsv3 fuzz_serve_request: bad error %d '%s'\n",
                   error->status, error->message.c_str());
      std::abort();
    }
    (void)errorJson(*error).dump(-1, ' ', false,
                                 nlohmann::json::error_handler_t::replace);
    return 0;
  }
  if (!(request.temperature >= 0.0) || !(request.topP > 0.0) ||
      request.topP > 1.0) {
    std::fprintf(stderr, "dsv3 fuzz_serve_request: accepted temperature %g "
                         "top_p %g\n",
                 request.temperature, request.topP);
    std::abort();
  }
  return 0;
}
