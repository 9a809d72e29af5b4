//===- StopMatcher.cpp - Stop strings over streamed text ------------------===//

#include "StopMatcher.h"

#include <algorithm>

using namespace dsv3::serve;

StopMatcher::StopMatcher(std::vector<std::string> stops)
    : stops_(std::move(stops)) {}

std::string StopMatcher::push(const std::string &piece) {
  if (stopped_)
    return "";
  held_ += piece;
  // The earliest stop string wins (a later-starting one may be complete
  // already but the text before the earlier one is all the client gets).
  // Searching held_ suffices: text already released could not begin a stop
  // string (it was released because it was no prefix of one).
  size_t first = std::string::npos;
  for (const std::string &stop : stops_)
    first = std::min(first, held_.find(stop));
  if (first != std::string::npos) {
    stopped_ = true;
    std::string out = held_.substr(0, first);
    held_.clear();
    return out;
  }
  // Hold back the longest tail that is a proper prefix of a stop string. It
  // starts at a UTF-8 lead byte, since a stop string does, so what is
  // released is always whole characters.
  size_t keep = 0;
  for (const std::string &stop : stops_) {
    size_t longest = std::min(stop.size() - 1, held_.size());
    for (size_t n = longest; n > keep; --n)
      if (held_.compare(held_.size() - n, n, stop, 0, n) == 0) {
        keep = n;
        break;
      }
  }
  std::string out = held_.substr(0, held_.size() - keep);
  held_.erase(0, held_.size() - keep);
  return out;
}

std::string StopMatcher::finish() {
  if (stopped_)
    return "";
  std::string out;
  out.swap(held_);
  return out;
}
