// SPDX-License-Identifier: Apache-2.0
// The registry of GRADPACK_* settings (declared once, in settings.def).
//
// Values are read from the environment and validated once, at the first call that needs them
// (Settings::global()), never in a static constructor, so a bad value becomes an error returned by
// that call. Tests build a Settings from an explicit map instead of the environment.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/status.h"

namespace gradpack {

enum class SettingKind { Enum, List, Int, String };

enum class SettingId : int {
#define GP_SETTING(id, var, kind, def, choices, doc) id,
#include "common/settings.def"
#undef GP_SETTING
  kCount
};

struct SettingInfo {
  SettingId id;
  const char* variable;
  SettingKind kind;
  const char* default_value;
  const char* choices;  // Enum/List: "a,b,c"; Int: "min,max"; String: ""
  const char* doc;
};

// Every declared setting, in declaration order.
const std::vector<SettingInfo>& all_settings();

class Settings {
 public:
  // Reads every declared variable from `env` (absent ones take their default) and validates them.
  static Status from_map(const std::map<std::string, std::string>& env, Settings* out);
  // The same from the environment as it is now (not cached): for faces that NCCL initializes once
  // per communicator, each possibly under a different environment.
  static Status from_environment(Settings* out);
  // The process-wide settings read from the real environment on first use. A bad value is
  // returned as an error on every call, so each API entry point reports it.
  static Status global(const Settings** out);

  const std::string& get(SettingId id) const { return values_[static_cast<int>(id)]; }
  int64_t get_int(SettingId id) const;
  // True when the variable was set in the environment rather than defaulted.
  bool is_set(SettingId id) const { return from_env_[static_cast<int>(id)]; }

 private:
  std::vector<std::string> values_;
  std::vector<bool> from_env_;
};

}  // namespace gradpack
