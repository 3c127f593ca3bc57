// SPDX-License-Identifier: Apache-2.0
#include "topology/cluster_file.h"

#include <cctype>
#include <charconv>
#include <cmath>
#include <fstream>
#include <map>
#include <sstream>

namespace gradpack::topology {
namespace {

constexpr size_t kMaxNames = 1000000;
constexpr size_t kMaxFileBytes = 64u << 20;
constexpr double kMaxRateMbps = 1e12;
constexpr double kMaxLatencyUs = 1e12;

std::string where(const std::string& source, int line) {
  return source + ":" + std::to_string(line) + ": ";
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// One line of a file: its number and its tokens (split on blanks, after the '#' comment).
struct FileLine {
  int number = 0;
  std::vector<std::string_view> tokens;
};

std::vector<FileLine> split_lines(std::string_view text) {
  std::vector<FileLine> lines;
  int number = 0;
  for (;;) {
    const size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    ++number;
    line = line.substr(0, line.find('#'));
    FileLine fl{number, {}};
    size_t i = 0;
    while (i < line.size()) {
      while (i < line.size() && std::isspace(static_cast<unsigned char>(line[i]))) ++i;
      size_t j = i;
      while (j < line.size() && !std::isspace(static_cast<unsigned char>(line[j]))) ++j;
      if (j > i) fl.tokens.push_back(line.substr(i, j - i));
      i = j;
    }
    if (!fl.tokens.empty()) lines.push_back(std::move(fl));
    if (nl == std::string_view::npos) return lines;
  }
}

// "7" or "01-04" inside a bracket group, appended as strings (with the lower bound's width).
Status expand_range(std::string_view range, std::vector<std::string>* out) {
  const size_t dash = range.find('-');
  const std::string_view lo = range.substr(0, dash);
  const std::string_view hi = dash == std::string_view::npos ? lo : range.substr(dash + 1);
  auto digits = [](std::string_view s) {
    return !s.empty() && s.size() <= 9 &&
           s.find_first_not_of("0123456789") == std::string_view::npos;
  };
  if (!digits(lo) || !digits(hi)) {
    return InvalidArgument("range '" + std::string(range) +
                           "' is not N or N-M with decimal numbers (at most 9 digits)");
  }
  const long a = std::stol(std::string(lo));
  const long b = std::stol(std::string(hi));
  if (b < a) {
    return InvalidArgument("range '" + std::string(range) + "' runs backwards (write " +
                           std::string(hi) + "-" + std::string(lo) + ")");
  }
  if (static_cast<size_t>(b - a) >= kMaxNames) {
    return InvalidArgument("range '" + std::string(range) + "' has more than 1000000 names");
  }
  for (long v = a; v <= b; ++v) {
    std::string s = std::to_string(v);
    if (s.size() < lo.size()) s.insert(0, lo.size() - s.size(), '0');
    out->push_back(std::move(s));
  }
  return OkStatus();
}

// One comma-free item ("r[0-1]n[0-3]"): literal text and bracket groups, every combination.
Status expand_item(std::string_view item, std::vector<std::string>* out) {
  std::vector<std::string> names = {""};
  size_t i = 0;
  while (i < item.size()) {
    const size_t open = item.find('[', i);
    const std::string_view literal = item.substr(i, open - i);
    if (literal.find(']') != std::string_view::npos) {
      return InvalidArgument("']' without '[' in '" + std::string(item) + "'");
    }
    for (std::string& n : names) n += literal;
    if (open == std::string_view::npos) break;
    const size_t close = item.find(']', open);
    if (close == std::string_view::npos) {
      return InvalidArgument("unclosed '[' in '" + std::string(item) + "'");
    }
    const std::string_view group = item.substr(open + 1, close - open - 1);
    if (group.empty() || group.find('[') != std::string_view::npos) {
      return InvalidArgument("bad bracket group '[" + std::string(group) + "]' in '" +
                             std::string(item) + "' (expected ranges like [0-3,7])");
    }
    std::vector<std::string> values;
    for (size_t p = 0; p <= group.size();) {
      const size_t comma = std::min(group.find(',', p), group.size());
      GP_RETURN_IF_ERROR(expand_range(group.substr(p, comma - p), &values));
      p = comma + 1;
    }
    if (names.size() * values.size() > kMaxNames) {
      return InvalidArgument("'" + std::string(item) + "' has more than 1000000 names");
    }
    std::vector<std::string> next;
    for (const std::string& n : names) {
      for (const std::string& v : values) next.push_back(n + v);
    }
    names = std::move(next);
    i = close + 1;
  }
  out->insert(out->end(), names.begin(), names.end());
  return OkStatus();
}

// A decimal number without sign or exponent, then a unit from the table (empty: factor of "").
Status parse_quantity(std::string_view text, const char* what,
                      const std::map<std::string, double>& units, double max, double* out) {
  size_t n = 0;
  while (n < text.size() && (std::isdigit(static_cast<unsigned char>(text[n])) || text[n] == '.'))
    ++n;
  double v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + n, v);
  std::string known;
  for (const auto& [u, f] : units) known += (known.empty() ? "" : ", ") + (u.empty() ? "none" : u);
  if (n == 0 || ec != std::errc() || end != text.data() + n) {
    return InvalidArgument("bad " + std::string(what) + " '" + std::string(text) +
                           "' (expected a number and a unit: " + known + ")");
  }
  auto unit = units.find(lower(text.substr(n)));
  if (unit == units.end()) {
    return InvalidArgument("bad " + std::string(what) + " unit in '" + std::string(text) +
                           "' (units: " + known + ")");
  }
  v *= unit->second;
  if (!std::isfinite(v) || v > max) {
    return InvalidArgument(std::string(what) + " '" + std::string(text) + "' is too large");
  }
  // Below 1 bit/s (1 ps): a typo, and a number the writer could not spell briefly.
  if (v > 0 && v < 1e-6) {
    return InvalidArgument(std::string(what) + " '" + std::string(text) + "' is too small");
  }
  *out = v;
  return OkStatus();
}

// The shortest decimal that parses back to v, without an exponent (the parser takes none).
std::string shortest(double v) {
  char buf[512];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v, std::chars_format::fixed);
  return ec == std::errc() ? std::string(buf, end) : std::to_string(v);
}

}  // namespace

const char* format_name(ClusterFormat format) {
  return format == ClusterFormat::kSlurm ? "slurm" : "gradpack";
}

Status expand_host_list(std::string_view text, std::vector<std::string>* out) {
  std::vector<std::string> names;
  size_t start = 0;
  int depth = 0;
  for (size_t i = 0; i <= text.size(); ++i) {
    if (i < text.size() && text[i] == '[') ++depth;
    if (i < text.size() && text[i] == ']') --depth;
    if (i < text.size() && (text[i] != ',' || depth > 0)) continue;
    const std::string_view item = text.substr(start, i - start);
    if (item.empty()) {
      return InvalidArgument("empty name in list '" + std::string(text) + "'");
    }
    GP_RETURN_IF_ERROR(expand_item(item, &names));
    if (names.size() > kMaxNames) {
      return InvalidArgument("list '" + std::string(text) + "' has more than 1000000 names");
    }
    start = i + 1;
  }
  for (const std::string& n : names) {
    if (!is_plain_name(n)) {
      return InvalidArgument("bad name '" + n + "' in '" + std::string(text) +
                             "' (names cannot hold '=', '#', ',', '[', ']' or blanks)");
    }
  }
  *out = std::move(names);
  return OkStatus();
}

Status parse_rate(std::string_view text, double* mbps) {
  static const std::map<std::string, double> kUnits = {
      {"", 1},       {"bit", 1e-6},  {"kbit", 1e-3}, {"mbit", 1},  {"gbit", 1e3},
      {"tbit", 1e6}, {"k", 1e-3},    {"m", 1},       {"g", 1e3},   {"t", 1e6},
      {"bps", 8e-6}, {"kbps", 8e-3}, {"mbps", 8},    {"gbps", 8e3}};
  return parse_quantity(text, "rate", kUnits, kMaxRateMbps, mbps);
}

Status parse_latency(std::string_view text, double* us) {
  static const std::map<std::string, double> kUnits = {
      {"", 1}, {"ns", 1e-3}, {"us", 1}, {"ms", 1e3}, {"s", 1e6}};
  return parse_quantity(text, "latency", kUnits, kMaxLatencyUs, us);
}

std::string rate_text(double mbps) {
  const double g = mbps / 1000;
  if (mbps >= 1000 && g == std::floor(g) && g < 1e15) return shortest(g) + "gbit";
  return shortest(mbps) + "mbit";
}

std::string latency_text(double us) { return shortest(us) + "us"; }

namespace {

// Slurm: SwitchName=NAME and one of Nodes= / Switches=, optional LinkSpeed=.
Status parse_slurm_line(const FileLine& fl, const std::string& source, ClusterDecls* decls) {
  const std::string at = where(source, fl.number);
  std::map<std::string, std::string_view> keys;  // lower-case key -> value
  for (std::string_view token : fl.tokens) {
    const size_t eq = token.find('=');
    if (eq == std::string_view::npos || eq == 0) {
      return InvalidArgument(at + "expected Key=Value, got '" + std::string(token) + "'");
    }
    const std::string key = lower(token.substr(0, eq));
    if (key != "switchname" && key != "switches" && key != "nodes" && key != "linkspeed") {
      return InvalidArgument(at + "unknown key '" + std::string(token.substr(0, eq)) +
                             "' (a topology.conf line takes SwitchName, Switches, Nodes and "
                             "LinkSpeed)");
    }
    if (eq + 1 == token.size()) return InvalidArgument(at + std::string(token) + " has no value");
    if (!keys.emplace(key, token.substr(eq + 1)).second) {
      return InvalidArgument(at + std::string(token.substr(0, eq)) + " is given twice");
    }
  }
  if (!keys.count("switchname")) return InvalidArgument(at + "the line has no SwitchName=");
  const std::string name(keys["switchname"]);
  if (!is_plain_name(name)) {
    return InvalidArgument(at + "SwitchName=" + name + " is not one plain name");
  }
  if (keys.count("nodes") && keys.count("switches")) {
    return InvalidArgument(at + "switch '" + name +
                           "' has both Nodes= and Switches=; hosts attach to leaf switches only");
  }
  double rate = 0;
  if (keys.count("linkspeed")) {
    Status st = parse_rate(keys["linkspeed"], &rate);
    if (!st.ok()) return InvalidArgument(at + "LinkSpeed: " + st.message());
  }
  decls->switches.push_back(SwitchDecl{name, fl.number, {}});
  for (const char* key : {"nodes", "switches"}) {
    if (!keys.count(key)) continue;
    std::vector<std::string> names;
    Status st = expand_host_list(keys[key], &names);
    if (!st.ok())
      return InvalidArgument(at + (key[0] == 'n' ? "Nodes: " : "Switches: ") + st.message());
    for (std::string& n : names) {
      if (key[0] == 'n') {
        decls->hosts.push_back(HostDecl{std::move(n), name, fl.number, Link{rate, 0}});
      } else {
        decls->parents.push_back(ParentDecl{std::move(n), name, fl.number, Link{rate, 0}});
      }
    }
  }
  return OkStatus();
}

// gradpack: "switch NAME [parent=P] [uplink=RATE] [latency=LAT]" or
// "host NAME switch=S [link=RATE] [latency=LAT]".
Status parse_gradpack_line(const FileLine& fl, const std::string& source, ClusterDecls* decls) {
  const std::string at = where(source, fl.number);
  const std::string kind(fl.tokens[0]);
  if (kind != "switch" && kind != "host") {
    return InvalidArgument(at + "expected 'switch NAME ...' or 'host NAME ...', got '" + kind +
                           "'");
  }
  const bool is_host = kind == "host";
  if (fl.tokens.size() < 2) return InvalidArgument(at + kind + " needs a NAME");
  std::vector<std::string> names;
  Status st = expand_host_list(fl.tokens[1], &names);
  if (!st.ok()) return InvalidArgument(at + st.message());
  std::map<std::string, std::string> keys;
  for (size_t i = 2; i < fl.tokens.size(); ++i) {
    const std::string_view token = fl.tokens[i];
    const size_t eq = token.find('=');
    const std::string key(token.substr(0, eq));
    const bool known = is_host ? key == "switch" || key == "link" || key == "latency"
                               : key == "parent" || key == "uplink" || key == "latency";
    if (eq == std::string_view::npos || !known) {
      std::string msg = at;
      msg.append("unknown ").append(kind).append(" attribute '").append(token);
      msg += is_host ? "' (switch=, link=, latency=)" : "' (parent=, uplink=, latency=)";
      return InvalidArgument(msg);
    }
    if (eq + 1 == token.size()) return InvalidArgument(at + key + "= has no value");
    if (!keys.emplace(key, token.substr(eq + 1)).second) {
      return InvalidArgument(at + key + "= is given twice");
    }
  }
  Link link;
  const std::string rate_key = is_host ? "link" : "uplink";
  if (keys.count(rate_key)) st = parse_rate(keys[rate_key], &link.rate_mbps);
  if (st.ok() && keys.count("latency")) st = parse_latency(keys["latency"], &link.latency_us);
  if (!st.ok()) return InvalidArgument(at + st.message());
  if (is_host && !keys.count("switch")) {
    return InvalidArgument(at + "host " + std::string(fl.tokens[1]) + " needs switch=NAME");
  }
  for (std::string& n : names) {
    if (is_host) {
      decls->hosts.push_back(HostDecl{std::move(n), keys["switch"], fl.number, link});
    } else {
      if (keys.count("parent"))
        decls->parents.push_back(ParentDecl{n, keys["parent"], fl.number, {}});
      decls->switches.push_back(SwitchDecl{std::move(n), fl.number, link});
    }
  }
  return OkStatus();
}

using LineParser = Status (*)(const FileLine&, const std::string&, ClusterDecls*);

Status parse_with(std::string_view text, const std::string& source, LineParser parse_line,
                  Cluster* out) {
  ClusterDecls decls;
  for (const FileLine& fl : split_lines(text)) {
    GP_RETURN_IF_ERROR(parse_line(fl, source, &decls));
  }
  return assemble_cluster(decls, source, out);
}

}  // namespace

Status parse_slurm_topology(std::string_view text, const std::string& source, Cluster* out) {
  return parse_with(text, source, parse_slurm_line, out);
}

Status parse_gradpack_cluster(std::string_view text, const std::string& source, Cluster* out) {
  return parse_with(text, source, parse_gradpack_line, out);
}

Status parse_cluster_text(std::string_view text, const std::string& source, Cluster* out,
                          ClusterFormat* format) {
  const std::vector<FileLine> lines = split_lines(text);
  ClusterFormat f = ClusterFormat::kGradpack;
  if (!lines.empty()) {
    const std::string_view first = lines[0].tokens[0];
    if (first.find('=') != std::string_view::npos) {
      f = ClusterFormat::kSlurm;
    } else if (first != "switch" && first != "host") {
      return InvalidArgument(where(source, lines[0].number) + "'" + std::string(first) +
                             "' starts neither a Slurm topology.conf line (SwitchName=...) nor a "
                             "gradpack cluster line (switch NAME ... or host NAME ...)");
    }
  }
  if (format != nullptr) *format = f;
  return f == ClusterFormat::kSlurm ? parse_slurm_topology(text, source, out)
                                    : parse_gradpack_cluster(text, source, out);
}

Status load_cluster_file(const std::string& path, Cluster* out, ClusterFormat* format) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return SystemError("cannot open cluster file '" + path + "'");
  std::string text;
  char chunk[65536];
  while (in.read(chunk, sizeof(chunk)) || in.gcount() > 0) {
    text.append(chunk, static_cast<size_t>(in.gcount()));
    if (text.size() > kMaxFileBytes) {
      return InvalidArgument("cluster file '" + path + "' is larger than 64 MiB");
    }
  }
  if (in.bad()) return SystemError("cannot read cluster file '" + path + "'");
  return parse_cluster_text(text, path, out, format);
}

std::string cluster_file_text(const Cluster& cluster) {
  std::ostringstream o;
  o << "# gradpack cluster file (docs/topology.md): switches, then hosts. Rates in Mbit/s\n"
       "# unless a unit says otherwise, latencies in microseconds; absent: unknown.\n";
  for (const ClusterSwitch& s : cluster.switches()) {
    o << "switch " << s.name;
    if (s.parent >= 0) o << " parent=" << cluster.switches()[static_cast<size_t>(s.parent)].name;
    if (s.uplink.rate_mbps > 0) o << " uplink=" << rate_text(s.uplink.rate_mbps);
    if (s.uplink.latency_us > 0) o << " latency=" << latency_text(s.uplink.latency_us);
    o << "\n";
  }
  for (const ClusterHost& h : cluster.hosts()) {
    o << "host " << h.name << " switch=" << cluster.switches()[static_cast<size_t>(h.leaf)].name;
    if (h.link.rate_mbps > 0) o << " link=" << rate_text(h.link.rate_mbps);
    if (h.link.latency_us > 0) o << " latency=" << latency_text(h.link.latency_us);
    o << "\n";
  }
  return o.str();
}

Status write_cluster_file(const Cluster& cluster, const std::string& path) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return SystemError("cannot create cluster file '" + path + "'");
  out << cluster_file_text(cluster);
  out.close();
  if (!out) return SystemError("cannot write cluster file '" + path + "'");
  return OkStatus();
}

}  // namespace gradpack::topology
