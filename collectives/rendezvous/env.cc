// SPDX-License-Identifier: Apache-2.0
#include "collectives/rendezvous/env.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "collectives/rendezvous/url.h"

extern char** environ;

namespace gradpack::coll {
namespace {

// Parses a decimal rank or size from an environment variable; -1 when absent.
Status env_int(const std::map<std::string, std::string>& env, const std::string& name, int* out) {
  auto it = env.find(name);
  if (it == env.end() || it->second.empty()) {
    *out = -1;
    return OkStatus();
  }
  char* end = nullptr;
  errno = 0;
  long v = std::strtol(it->second.c_str(), &end, 10);
  if (errno != 0 || *end != '\0' || v < 0 || v > (1 << 20)) {
    return InvalidArgument(name + "='" + it->second + "' is not a rank or size (a decimal from 0)");
  }
  *out = static_cast<int>(v);
  return OkStatus();
}

std::string env_get(const std::map<std::string, std::string>& env, const std::string& name) {
  auto it = env.find(name);
  return it == env.end() ? std::string() : it->second;
}

}  // namespace

Status rendezvous_from_env(const std::map<std::string, std::string>& env, EnvRendezvous* out) {
  struct Source {
    const char* rank;
    const char* size;
  };
  const Source sources[] = {{"GRADPACK_RANK", "GRADPACK_WORLD_SIZE"},
                            {"RANK", "WORLD_SIZE"},
                            {"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"},
                            {"SLURM_PROCID", "SLURM_NTASKS"}};
  EnvRendezvous r;
  for (const Source& s : sources) {
    int rank = -1, size = -1;
    GP_RETURN_IF_ERROR(env_int(env, s.rank, &rank));
    GP_RETURN_IF_ERROR(env_int(env, s.size, &size));
    if (rank < 0 && size < 0) continue;
    if (rank < 0 || size < 0) {
      return InvalidArgument(std::string(rank < 0 ? s.rank : s.size) + " is not set but " +
                             (rank < 0 ? s.size : s.rank) + " is: set both");
    }
    r.rank = rank;
    r.nranks = size;
    r.source = std::string(s.rank) + "/" + s.size;
    break;
  }
  if (r.rank < 0) {
    return InvalidArgument(
        "no rank in the environment: set GRADPACK_RANK and GRADPACK_WORLD_SIZE (or run under "
        "torchrun, mpirun or srun)");
  }
  if (r.nranks < 1 || r.rank >= r.nranks) {
    return InvalidArgument("rank " + std::to_string(r.rank) + " is outside world size " +
                           std::to_string(r.nranks) + " (from " + r.source + ")");
  }
  std::string root = env_get(env, "GRADPACK_ROOT");
  if (!root.empty()) {
    r.url = root.find("://") == std::string::npos ? "tcp://" + root : root;
  } else {
    std::string addr = env_get(env, "MASTER_ADDR");
    std::string port = env_get(env, "MASTER_PORT");
    if (addr.empty() || port.empty()) {
      return InvalidArgument(
          "no rendezvous in the environment: set GRADPACK_ROOT=HOST:PORT (rank 0 serves there), "
          "or MASTER_ADDR and MASTER_PORT");
    }
    r.url = "tcp://" + (addr.find(':') != std::string::npos ? "[" + addr + "]" : addr) + ":" + port;
  }
  *out = std::move(r);
  return OkStatus();
}

std::map<std::string, std::string> environment_map() {
  std::map<std::string, std::string> env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    const char* eq = std::strchr(*e, '=');
    if (eq != nullptr) {
      env.emplace(std::string(*e, static_cast<size_t>(eq - *e)), std::string(eq + 1));
    }
  }
  return env;
}

Status store_from_url(const std::string& url, int rank, std::chrono::milliseconds timeout,
                      std::shared_ptr<Store>* out) {
  RendezvousUrl parsed;
  GP_RETURN_IF_ERROR(parse_rendezvous_url(url, &parsed));
  if (parsed.kind == RendezvousUrl::Kind::kFile) return make_file_store(parsed.path, out);
  return make_tcp_store(parsed.host, parsed.port, rank == 0, timeout, out);
}

}  // namespace gradpack::coll
