// Errors: one exception type whose message names the input and what was expected.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace mtrank {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Builds a message from streamable parts and throws mtrank::Error.
/// Usage: fail("embedding 'item_id': id ", id, " >= rows ", rows);
template <class... Parts>
[[noreturn]] void fail(Parts&&... parts) {
  std::ostringstream os;
  (os << ... << std::forward<Parts>(parts));
  throw Error(os.str());
}

/// Throws with the given parts when `ok` is false. Keep argument construction cheap:
/// the parts are evaluated even when ok holds, so hot loops should test first and call fail().
template <class... Parts>
inline void require(bool ok, Parts&&... parts) {
  if (!ok) fail(std::forward<Parts>(parts)...);
}

}  // namespace mtrank
