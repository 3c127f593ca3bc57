// SPDX-License-Identifier: Apache-2.0
#include "compression/spec.h"

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <vector>

namespace gradpack {
namespace {

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> parts;
  size_t start = 0;
  while (true) {
    size_t pos = s.find(sep, start);
    parts.push_back(s.substr(start, pos == std::string_view::npos ? pos : pos - start));
    if (pos == std::string_view::npos) break;
    start = pos + 1;
  }
  return parts;
}

template <typename T>
bool parse_unsigned(std::string_view s, T* out) {
  if (s.empty()) return false;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && ptr == s.data() + s.size();
}

// "q8:block=128:round=stochastic:seed=7"
Status parse_quant(std::string_view whole, std::string_view text, QuantSpec* q) {
  auto bad = [&](const std::string& why) {
    return InvalidArgument("codec spec \"" + std::string(whole) + "\": " + why);
  };
  std::vector<std::string_view> parts = split(text, ':');
  std::string_view head = parts[0];
  int bits = 0;
  if (head.size() < 2 || head[0] != 'q' || !parse_unsigned(head.substr(1), &bits))
    return bad("\"" + std::string(head) + "\" is not a quantizer; expected q<bits>, e.g. q8");
  if (bits < kMinBits || bits > kMaxBits)
    return bad("\"" + std::string(head) + "\": bits must be in 2..16");
  q->bits = bits;
  for (size_t i = 1; i < parts.size(); ++i) {
    std::string_view opt = parts[i];
    size_t eq = opt.find('=');
    if (eq == std::string_view::npos)
      return bad("option \"" + std::string(opt) + "\" has no value; expected key=value");
    std::string_view key = opt.substr(0, eq), value = opt.substr(eq + 1);
    if (key == "block") {
      uint32_t block = 0;
      if (!parse_unsigned(value, &block) || block < 8 || block > kMaxBlock || block % 8 != 0)
        return bad("block=" + std::string(value) +
                   ": the block must be a multiple of 8 from 8 to 16777216");
      q->block = block;
    } else if (key == "round") {
      if (value == "nearest") {
        q->rounding = Rounding::kNearest;
      } else if (value == "stochastic") {
        q->rounding = Rounding::kStochastic;
      } else {
        return bad("round=" + std::string(value) + ": expected nearest or stochastic");
      }
    } else if (key == "seed") {
      if (!parse_unsigned(value, &q->seed))
        return bad("seed=" + std::string(value) + ": expected an unsigned 64-bit integer");
    } else {
      return bad("unknown option \"" + std::string(key) + "\"; expected block, round or seed");
    }
  }
  return OkStatus();
}

std::string quant_canonical(const QuantSpec& q) {
  return "q" + std::to_string(q.bits) + ":block=" + std::to_string(q.block) +
         ":round=" + (q.rounding == Rounding::kStochastic ? "stochastic" : "nearest") +
         ":seed=" + std::to_string(q.seed);
}

}  // namespace

const char* codec_kind_name(CodecKind kind) {
  switch (kind) {
    case CodecKind::kNone:
      return "none";
    case CodecKind::kFp16:
      return "fp16";
    case CodecKind::kBf16:
      return "bf16";
    case CodecKind::kQuant:
      return "quant";
    case CodecKind::kTopk:
      return "topk";
  }
  return "unknown";
}

std::string CodecSpec::canonical() const {
  switch (kind) {
    case CodecKind::kNone:
      return "none";
    case CodecKind::kFp16:
      return "fp16";
    case CodecKind::kBf16:
      return "bf16";
    case CodecKind::kQuant:
      return quant_canonical(quant);
    case CodecKind::kTopk: {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.9g", fraction);
      std::string s = std::string("topk:") + buf;
      if (quant.bits != 0) s += "+" + quant_canonical(quant);
      return s;
    }
  }
  return "unknown";
}

Status parse_codec_spec(std::string_view text, CodecSpec* out) {
  CodecSpec spec;
  if (text == "none" || text == "fp16" || text == "bf16") {
    spec.kind = text == "none"   ? CodecKind::kNone
                : text == "fp16" ? CodecKind::kFp16
                                 : CodecKind::kBf16;
  } else if (text.substr(0, 1) == "q") {
    spec.kind = CodecKind::kQuant;
    GP_RETURN_IF_ERROR(parse_quant(text, text, &spec.quant));
  } else if (text.substr(0, 5) == "topk:") {
    spec.kind = CodecKind::kTopk;
    std::string_view rest = text.substr(5);
    size_t plus = rest.find('+');
    std::string fraction(rest.substr(0, plus));
    char* end = nullptr;
    errno = 0;
    double f = fraction.empty() ? 0.0 : std::strtod(fraction.c_str(), &end);
    if (fraction.empty() || errno != 0 || *end != '\0' || !(f > 0.0 && f <= 1.0))
      return InvalidArgument("codec spec \"" + std::string(text) + "\": fraction \"" + fraction +
                             "\" must be a number in (0, 1], e.g. topk:0.01");
    spec.fraction = f;
    if (plus != std::string_view::npos)
      GP_RETURN_IF_ERROR(parse_quant(text, rest.substr(plus + 1), &spec.quant));
  } else {
    return InvalidArgument("codec spec \"" + std::string(text) +
                           "\": unknown codec; expected none, fp16, bf16, q<bits> or "
                           "topk:<fraction>[+q<bits>]");
  }
  *out = spec;
  return OkStatus();
}

}  // namespace gradpack
