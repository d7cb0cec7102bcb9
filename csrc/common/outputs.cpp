#include "common/outputs.h"

#include <cstdlib>
#include <cstring>
#include <limits>

namespace mvscan {

bool poison_outputs() {
  static const bool poison = [] {
    const char* v = std::getenv("MVSCAN_POISON_OUTPUTS");
    return v != nullptr && std::strcmp(v, "1") == 0;
  }();
  return poison;
}

at::Tensor poisoned(at::Tensor t) {
  if (poison_outputs()) t.fill_(std::numeric_limits<double>::quiet_NaN());
  return t;
}

}  // namespace mvscan
