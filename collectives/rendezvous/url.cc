// SPDX-License-Identifier: Apache-2.0
#include "collectives/rendezvous/url.h"

#include <charconv>

namespace gradpack {

Status parse_rendezvous_url(const std::string& url, RendezvousUrl* out) {
  auto bad = [&](const std::string& why) {
    return InvalidArgument("rendezvous \"" + url + "\": " + why +
                           "; expected tcp://HOST:PORT or file:///ABSOLUTE/PATH");
  };
  RendezvousUrl u;
  const size_t scheme_end = url.find("://");
  if (scheme_end == std::string::npos) return bad("no scheme");
  const std::string scheme = url.substr(0, scheme_end);
  const std::string rest = url.substr(scheme_end + 3);
  if (scheme == "file") {
    u.kind = RendezvousUrl::Kind::kFile;
    if (rest.empty() || rest[0] != '/') return bad("the file path must be absolute");
    u.path = rest;
    *out = u;
    return OkStatus();
  }
  if (scheme != "tcp") return bad("unknown scheme \"" + scheme + "\"");
  u.kind = RendezvousUrl::Kind::kTcp;
  std::string port_text;
  if (!rest.empty() && rest[0] == '[') {  // [IPv6]:PORT
    const size_t close = rest.find(']');
    if (close == std::string::npos) return bad("unclosed '[' in the host");
    u.host = rest.substr(1, close - 1);
    if (close + 1 >= rest.size() || rest[close + 1] != ':') return bad("no port");
    port_text = rest.substr(close + 2);
  } else {
    const size_t colon = rest.rfind(':');
    if (colon == std::string::npos) return bad("no port");
    u.host = rest.substr(0, colon);
    if (u.host.find(':') != std::string::npos)
      return bad("an IPv6 host must be in brackets, as tcp://[::1]:29500");
    port_text = rest.substr(colon + 1);
  }
  if (u.host.empty()) return bad("no host");
  if (u.host.find_first_of("/?#@ ") != std::string::npos)
    return bad("the host has a bad character");
  unsigned port = 0;
  auto [ptr, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (port_text.empty() || ec != std::errc() || ptr != port_text.data() + port_text.size() ||
      port == 0 || port > 65535)
    return bad("port \"" + port_text + "\" is not a number in 1..65535");
  u.port = static_cast<uint16_t>(port);
  *out = u;
  return OkStatus();
}

}  // namespace gradpack
