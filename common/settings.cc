// SPDX-License-Identifier: Apache-2.0
#include "common/settings.h"

#include <cstdlib>
#include <mutex>
#include <sstream>

namespace gradpack {
namespace {

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> parts;
  std::stringstream in(s);
  std::string part;
  while (std::getline(in, part, ',')) parts.push_back(part);
  return parts;
}

bool contains(const std::vector<std::string>& v, const std::string& s) {
  for (const auto& x : v)
    if (x == s) return true;
  return false;
}

bool parse_int(const std::string& s, int64_t* out) {
  if (s.empty()) return false;
  char* end = nullptr;
  errno = 0;
  long long v = std::strtoll(s.c_str(), &end, 10);
  if (errno != 0 || *end != '\0') return false;
  *out = v;
  return true;
}

Status validate(const SettingInfo& info, const std::string& value) {
  auto bad = [&](const std::string& why) {
    return InvalidArgument(std::string(info.variable) + "=\"" + value + "\" is not valid: " + why);
  };
  switch (info.kind) {
    case SettingKind::Enum:
      if (!contains(split_commas(info.choices), value))
        return bad(std::string("expected one of ") + info.choices);
      return OkStatus();
    case SettingKind::List: {
      auto allowed = split_commas(info.choices);
      for (const auto& item : split_commas(value))
        if (!contains(allowed, item)) return bad("\"" + item + "\" is not one of " + info.choices);
      if (value.empty()) return bad(std::string("expected a list of ") + info.choices);
      return OkStatus();
    }
    case SettingKind::Int: {
      int64_t v = 0, lo = 0, hi = 0;
      auto range = split_commas(info.choices);
      if (!parse_int(value, &v)) return bad("expected a decimal integer");
      if (range.size() == 2 && parse_int(range[0], &lo) && parse_int(range[1], &hi) &&
          (v < lo || v > hi))
        return bad("expected a value in [" + range[0] + ", " + range[1] + "]");
      return OkStatus();
    }
    case SettingKind::String:
      return OkStatus();
  }
  return OkStatus();
}

}  // namespace

const std::vector<SettingInfo>& all_settings() {
  static const std::vector<SettingInfo> list = {
#define GP_SETTING(id, var, kind, def, choices, doc) \
  {SettingId::id, var, SettingKind::kind, def, choices, doc},
#include "common/settings.def"
#undef GP_SETTING
  };
  return list;
}

Status Settings::from_map(const std::map<std::string, std::string>& env, Settings* out) {
  Settings s;
  for (const SettingInfo& info : all_settings()) {
    auto it = env.find(info.variable);
    bool set = it != env.end();
    std::string value = set ? it->second : info.default_value;
    // No GP_RETURN_IF_ERROR here: its trail is logged, and logging reads these settings.
    if (Status st = validate(info, value); !st.ok()) return st;
    s.values_.push_back(value);
    s.from_env_.push_back(set);
  }
  *out = std::move(s);
  return OkStatus();
}

Status Settings::from_environment(Settings* out) {
  std::map<std::string, std::string> env;
  for (const SettingInfo& info : all_settings())
    if (const char* v = std::getenv(info.variable)) env[info.variable] = v;
  return from_map(env, out);
}

Status Settings::global(const Settings** out) {
  static std::once_flag once;
  static Settings settings;
  static Status status;
  std::call_once(once, [] { status = from_environment(&settings); });
  *out = &settings;
  return status;
}

int64_t Settings::get_int(SettingId id) const {
  int64_t v = 0;
  parse_int(get(id), &v);
  return v;
}

}  // namespace gradpack
