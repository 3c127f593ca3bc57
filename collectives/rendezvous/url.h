// SPDX-License-Identifier: Apache-2.0
// Rendezvous URLs, as gp_comm_init() takes them:
//   tcp://HOST:PORT     rank 0 serves a TCP store on PORT; the others connect to HOST:PORT
//                       (HOST: a name, an IPv4 address, or an IPv6 address in brackets)
//   file:///ABS/PATH    a directory every rank can see
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"

namespace gradpack {

struct RendezvousUrl {
  enum class Kind { kTcp, kFile } kind = Kind::kTcp;
  std::string host;  // tcp: without brackets
  uint16_t port = 0;
  std::string path;  // file: absolute
};

// A malformed URL is kInvalidArgument with a message that quotes it and says what is wrong.
Status parse_rendezvous_url(const std::string& url, RendezvousUrl* out);

}  // namespace gradpack
