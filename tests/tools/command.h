// SPDX-License-Identifier: Apache-2.0
// Runs a shell command for the tools' tests: its exit status, combined output and duration.
#ifndef GRADPACK_TESTS_TOOLS_COMMAND_H_
#define GRADPACK_TESTS_TOOLS_COMMAND_H_

#include <sys/wait.h>

#include <chrono>
#include <cstdio>
#include <string>

namespace gradpack::tools::testing {

struct CommandResult {
  int status = -1;  // exit status, 128 + signal if killed, -1 if it could not run
  std::string output;
  double seconds = 0;
};

inline CommandResult run_command(const std::string& command) {
  CommandResult result;
  const auto start = std::chrono::steady_clock::now();
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return result;
  char buf[4096];
  size_t n = 0;
  while ((n = fread(buf, 1, sizeof(buf), pipe)) > 0) result.output.append(buf, n);
  const int status = pclose(pipe);
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (status != -1 && WIFEXITED(status)) result.status = WEXITSTATUS(status);
  if (status != -1 && WIFSIGNALED(status)) result.status = 128 + WTERMSIG(status);
  return result;
}

}  // namespace gradpack::tools::testing

#endif  // GRADPACK_TESTS_TOOLS_COMMAND_H_
