// SPDX-License-Identifier: Apache-2.0
// gradpack-run: starts N ranks of a program on this machine (or one per host of the namespaced
// virtual cluster of scripts/vcluster.sh) with the environment gp_comm_init_from_env() reads,
// waits for them, and stops them all as soon as one fails.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

namespace {

constexpr int kExitUsage = 2;
constexpr int kExitTimeout = 124;
constexpr int kExitLaunch = 127;
constexpr double kKillGraceSeconds = 5.0;
constexpr const char* kDefaultHostsFile = "/run/gradpack-vcluster/hosts";

constexpr const char* kHelp =
    R"(usage: gradpack-run -n N [--vcluster] [--timeout SEC] [--] PROGRAM [ARGS...]

Starts N ranks of PROGRAM and waits for them. Each rank gets, in its environment:

  GRADPACK_RANK         its rank, 0..N-1
  GRADPACK_WORLD_SIZE   N
  GRADPACK_ROOT         HOST:PORT of the rendezvous store that rank 0 serves
  GRADPACK_LOCAL_RANK   its index among the ranks of its host (informational)
  GRADPACK_LOCAL_SIZE   the number of ranks on its host (informational)
  GRADPACK_IFNAME       (--vcluster only) the interface of its namespaced host
  GRADPACK_HOSTNAME     (--vcluster only) its host's name (gpvcN), as cluster files name it

Rank output goes straight to this program's stdout and stderr, unprefixed.

If a rank exits with a non-zero status or is killed by a signal, gradpack-run says which rank and
how, sends SIGTERM to the ranks still running, SIGKILL 5 s later, and exits with that first
failing rank's status (128 + the signal number for a signal). SIGINT and SIGTERM sent to
gradpack-run are forwarded to every rank.

Options:
  -n, --np N        number of ranks (required)
  --vcluster        run rank i in host i % H of the virtual cluster made by
                    `scripts/vcluster.sh up H` (through `ip netns exec`; needs root). The hosts
                    are read from /run/gradpack-vcluster/hosts (lines "NAME ADDRESS IFNAME"), or
                    the file named by GRADPACK_VCLUSTER_HOSTS. GRADPACK_ROOT is host 0's address
                    with port 29500 + (pid % 1000)
  --timeout SEC     kill every rank after SEC seconds (SIGTERM, then SIGKILL 5 s later) and
                    exit 124
  -h, --help        this text

Without --vcluster, GRADPACK_ROOT is 127.0.0.1 and a port that was free when gradpack-run
started (bound to port 0 and closed).

Exit status: 0 all ranks succeeded; the first failing rank's status; 124 timeout; 2 usage error;
127 PROGRAM could not be started.
)";

struct RunOptions {
  int nranks = 0;
  bool vcluster = false;
  double timeout_s = 0;  // 0: none
  std::vector<std::string> argv;
};

struct Host {
  std::string name;
  std::string address;
  std::string ifname;
};

std::optional<long> parse_long(std::string_view s) {
  long v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return v;
}

// Returns an error message, or std::nullopt.
std::optional<std::string> parse_args(int argc, char** argv, RunOptions* out, bool* help) {
  int i = 1;
  for (; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--") {
      ++i;
      break;
    }
    if (arg.empty() || arg[0] != '-') break;  // PROGRAM
    if (arg == "-h" || arg == "--help") {
      *help = true;
      return std::nullopt;
    }
    if (arg == "--vcluster") {
      out->vcluster = true;
      continue;
    }
    std::string_view value;
    std::string_view name = arg;
    if (auto eq = arg.find('='); arg.substr(0, 2) == "--" && eq != std::string_view::npos) {
      name = arg.substr(0, eq);
      value = arg.substr(eq + 1);
    } else if (arg.size() > 2 && arg.substr(0, 2) == "-n") {
      name = "-n";
      value = arg.substr(2);
    } else if (arg == "-n" || arg == "--np" || arg == "--timeout") {
      if (i + 1 >= argc) return std::string(arg) + " needs a value";
      value = argv[++i];
    } else {
      return "unknown option '" + std::string(arg) + "' (see --help)";
    }
    if (name == "-n" || name == "--np") {
      auto v = parse_long(value);
      if (!v || *v < 1 || *v > 4096) {
        return "-n: expected a rank count in [1, 4096], got '" + std::string(value) + "'";
      }
      out->nranks = static_cast<int>(*v);
    } else if (name == "--timeout") {
      char* end = nullptr;
      const std::string text(value);
      const double v = std::strtod(text.c_str(), &end);
      if (text.empty() || *end != '\0' || !(v > 0)) {
        return "--timeout: expected a positive number of seconds, got '" + text + "'";
      }
      out->timeout_s = v;
    } else {
      return "unknown option '" + std::string(arg) + "' (see --help)";
    }
  }
  for (; i < argc; ++i) out->argv.emplace_back(argv[i]);
  if (out->nranks == 0) return "-n N is required (see --help)";
  if (out->argv.empty()) return "no program to run (gradpack-run -n N -- PROGRAM ARGS...)";
  return std::nullopt;
}

std::optional<std::string> read_hosts(std::vector<Host>* hosts) {
  const char* env = std::getenv("GRADPACK_VCLUSTER_HOSTS");
  const std::string path = env != nullptr && *env != '\0' ? env : kDefaultHostsFile;
  std::ifstream in(path);
  if (!in) return "no vcluster: run scripts/vcluster.sh up N (" + path + " is missing)";
  std::string line;
  int lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    std::istringstream fields(line);
    Host h;
    if (!(fields >> h.name)) continue;  // blank line
    if (h.name[0] == '#') continue;
    std::string extra;
    if (!(fields >> h.address >> h.ifname) || (fields >> extra)) {
      std::string err = path;
      err += ":" + std::to_string(lineno);
      err += ": expected \"NAME ADDRESS IFNAME\", got '" + line + "'";
      return err;
    }
    hosts->push_back(std::move(h));
  }
  if (hosts->empty()) return "no vcluster: run scripts/vcluster.sh up N (" + path + " is empty)";
  return std::nullopt;
}

// A port that is free on 127.0.0.1 now. Rank 0 binds it a moment later; another process taking
// it in between is possible but unlikely.
std::optional<int> pick_free_port() {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return std::nullopt;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  int port = -1;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  close(fd);
  if (port <= 0) return std::nullopt;
  return port;
}

struct Rank {
  pid_t pid = -1;
  bool running = false;
};

double monotonic_now() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

class Launcher {
 public:
  explicit Launcher(RunOptions opts) : opts_(std::move(opts)) {}

  int run() {
    if (opts_.vcluster) {
      if (auto err = read_hosts(&hosts_)) {
        std::fprintf(stderr, "gradpack-run: %s\n", err->c_str());
        return kExitUsage;
      }
      root_ = hosts_[0].address + ":" + std::to_string(29500 + getpid() % 1000);
    } else {
      auto port = pick_free_port();
      if (!port) {
        std::fprintf(stderr, "gradpack-run: cannot find a free port on 127.0.0.1: %s\n",
                     std::strerror(errno));
        return kExitLaunch;
      }
      root_ = "127.0.0.1:" + std::to_string(*port);
    }

    // Signals are taken synchronously (sigtimedwait) in the wait loop; children get the old mask.
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    sigprocmask(SIG_BLOCK, &set, &old_mask_);

    ranks_.resize(static_cast<size_t>(opts_.nranks));
    for (int r = 0; r < opts_.nranks; ++r) {
      if (!spawn(r)) {
        std::fprintf(stderr, "gradpack-run: cannot start rank %d: %s\n", r, std::strerror(errno));
        exit_status_ = kExitLaunch;
        stop_all(SIGTERM);
        break;
      }
    }
    return wait_for_ranks(set);
  }

 private:
  bool spawn(int r) {
    std::vector<std::string> env = {
        "GRADPACK_RANK=" + std::to_string(r),
        "GRADPACK_WORLD_SIZE=" + std::to_string(opts_.nranks),
        "GRADPACK_ROOT=" + root_,
    };
    std::vector<std::string> args;
    if (opts_.vcluster) {
      const int h = static_cast<int>(hosts_.size());
      const Host& host = hosts_[static_cast<size_t>(r % h)];
      const int local_size = opts_.nranks / h + (r % h < opts_.nranks % h ? 1 : 0);
      env.push_back("GRADPACK_LOCAL_RANK=" + std::to_string(r / h));
      env.push_back("GRADPACK_LOCAL_SIZE=" + std::to_string(local_size));
      env.push_back("GRADPACK_IFNAME=" + host.ifname);
      env.push_back("GRADPACK_HOSTNAME=" + host.name);
      args = {"ip", "netns", "exec", host.name};
    } else {
      env.push_back("GRADPACK_LOCAL_RANK=" + std::to_string(r));
      env.push_back("GRADPACK_LOCAL_SIZE=" + std::to_string(opts_.nranks));
    }
    args.insert(args.end(), opts_.argv.begin(), opts_.argv.end());
    std::vector<char*> cargs;
    cargs.reserve(args.size() + 1);
    for (auto& a : args) cargs.push_back(a.data());
    cargs.push_back(nullptr);

    const pid_t pid = fork();
    if (pid < 0) return false;
    if (pid == 0) {
      sigprocmask(SIG_SETMASK, &old_mask_, nullptr);
      for (auto& e : env) putenv(e.data());
      execvp(cargs[0], cargs.data());
      std::fprintf(stderr, "gradpack-run: rank %d: cannot run %s: %s\n", r, cargs[0],
                   std::strerror(errno));
      std::_Exit(kExitLaunch);
    }
    ranks_[static_cast<size_t>(r)] = {pid, true};
    ++running_;
    return true;
  }

  void stop_all(int sig) {
    for (const Rank& rank : ranks_) {
      if (rank.running) kill(rank.pid, sig);
    }
    if (sig == SIGTERM && kill_at_ == 0) kill_at_ = monotonic_now() + kKillGraceSeconds;
  }

  void reap() {
    for (;;) {
      int status = 0;
      const pid_t pid = waitpid(-1, &status, WNOHANG);
      if (pid <= 0) return;
      for (size_t r = 0; r < ranks_.size(); ++r) {
        if (ranks_[r].pid != pid || !ranks_[r].running) continue;
        ranks_[r].running = false;
        --running_;
        on_rank_exit(static_cast<int>(r), status);
      }
    }
  }

  void on_rank_exit(int r, int status) {
    int code = 0;
    if (WIFEXITED(status)) {
      code = WEXITSTATUS(status);
      if (code != 0 && !stopping_) {
        std::fprintf(stderr, "gradpack-run: rank %d (pid %d) exited with status %d\n", r,
                     static_cast<int>(ranks_[static_cast<size_t>(r)].pid), code);
      }
    } else if (WIFSIGNALED(status)) {
      const int sig = WTERMSIG(status);
      code = 128 + sig;
      if (!stopping_) {
        std::fprintf(stderr, "gradpack-run: rank %d (pid %d) was killed by signal %d (%s)\n", r,
                     static_cast<int>(ranks_[static_cast<size_t>(r)].pid), sig, strsignal(sig));
      }
    }
    if (code != 0 && !stopping_) {
      // The first failure decides the exit status; the ranks we stop after it do not.
      stopping_ = true;
      exit_status_ = code;
      if (running_ > 0) {
        std::fprintf(stderr, "gradpack-run: stopping the other %d rank(s)\n", running_);
        stop_all(SIGTERM);
      }
    }
  }

  int wait_for_ranks(const sigset_t& set) {
    const double deadline = opts_.timeout_s > 0 ? monotonic_now() + opts_.timeout_s : 0;
    while (running_ > 0) {
      reap();
      if (running_ == 0) break;
      const double now = monotonic_now();
      if (deadline > 0 && now >= deadline && !timed_out_) {
        timed_out_ = true;
        std::fprintf(stderr, "gradpack-run: timeout after %g s: killing %d rank(s)\n",
                     opts_.timeout_s, running_);
        stopping_ = true;
        exit_status_ = kExitTimeout;
        stop_all(SIGTERM);
      }
      if (kill_at_ > 0 && now >= kill_at_ && !killed_) {
        killed_ = true;
        std::fprintf(stderr, "gradpack-run: %d rank(s) still running after SIGTERM: SIGKILL\n",
                     running_);
        stop_all(SIGKILL);
      }
      timespec wait = {0, 100 * 1000 * 1000};
      siginfo_t info;
      const int sig = sigtimedwait(&set, &info, &wait);
      if (sig == SIGINT || sig == SIGTERM || sig == SIGHUP) {
        // Forward, and exit 128 + sig like an interrupted program, whatever the ranks return.
        for (const Rank& rank : ranks_) {
          if (rank.running) kill(rank.pid, sig);
        }
        if (!stopping_) {
          stopping_ = true;
          exit_status_ = 128 + sig;
        }
        if (kill_at_ == 0) kill_at_ = monotonic_now() + kKillGraceSeconds;
      }
    }
    return exit_status_;
  }

  RunOptions opts_;
  std::vector<Host> hosts_;
  std::string root_;
  std::vector<Rank> ranks_;
  sigset_t old_mask_;
  int running_ = 0;
  int exit_status_ = 0;
  bool stopping_ = false;
  bool timed_out_ = false;
  bool killed_ = false;
  double kill_at_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  RunOptions opts;
  bool help = false;
  if (auto err = parse_args(argc, argv, &opts, &help)) {
    std::fprintf(stderr, "gradpack-run: %s\n", err->c_str());
    return kExitUsage;
  }
  if (help) {
    std::fputs(kHelp, stdout);
    return 0;
  }
  return Launcher(std::move(opts)).run();
}
