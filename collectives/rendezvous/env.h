// SPDX-License-Identifier: Apache-2.0
// Where gp_comm_init_from_env() finds rank, world size and rendezvous: the launcher's environment
// (gradpack-run, torchrun, mpirun, srun; the order is documented in gradpack.h).
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <string>

#include "collectives/rendezvous/store.h"
#include "common/status.h"

namespace gradpack::coll {

struct EnvRendezvous {
  int rank = -1;
  int nranks = -1;
  std::string url;     // tcp://HOST:PORT or file:///PATH
  std::string source;  // which variables were used, for messages
};

// `env` is the process environment (environment_map()) or a test's map.
Status rendezvous_from_env(const std::map<std::string, std::string>& env, EnvRendezvous* out);

// The whole process environment as it is now (launchers' variables included, not only gradpack's
// settings).
std::map<std::string, std::string> environment_map();

// The store a rendezvous URL names (rendezvous/url.h): rank 0 serves a tcp:// store, the others
// connect to it within `timeout`.
Status store_from_url(const std::string& url, int rank, std::chrono::milliseconds timeout,
                      std::shared_ptr<Store>* out);

}  // namespace gradpack::coll
