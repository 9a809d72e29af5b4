//===- StopMatcher.h - Stop strings over streamed text ----------*- C++ -*-===//
//
// Cuts generated text before the first stop string. Text arrives in pieces
// (whole UTF-8 characters, from StreamingDecoder); a piece's tail that could
// be the start of a stop string is held back until the next piece decides,
// so a client never receives a prefix of a stop string that later turns out
// to be one. With no stop strings nothing is held back.
//
//===----------------------------------------------------------------------===//

#ifndef DSV3_SERVE_STOPMATCHER_H
#define DSV3_SERVE_STOPMATCHER_H

#include <string>
#include <vector>

namespace dsv3 {
namespace serve {

class StopMatcher {
public:
  /// `stops` must not contain "".
  explicit StopMatcher(std::vector<std::string> stops);

  /// Appends `piece` and returns the text that is now certain to be output.
  /// Once a stop string has been seen, stopped() is true and everything
  /// after the text before it is dropped (later pushes return "").
  std::string push(const std::string &piece);
  /// The generation has ended: whatever is held back is output.
  std::string finish();
  bool stopped() const { return stopped_; }

private:
  std::vector<std::string> stops_;
  std::string held_;
  bool stopped_ = false;
};

} // namespace serve
} // namespace dsv3

#endif // DSV3_SERVE_STOPMATCHER_H
