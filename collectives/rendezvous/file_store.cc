// SPDX-License-Identifier: Apache-2.0
// FileStore: one file per key in a shared directory.
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <thread>

#include "collectives/rendezvous/store.h"

namespace gradpack {
namespace {

// Key bytes as hex: any key is a valid, unique file name.
std::string file_name(const std::string& key) {
  static const char kHex[] = "0123456789abcdef";
  std::string name = "k_";
  for (unsigned char c : key) {
    name += kHex[c >> 4];
    name += kHex[c & 15];
  }
  return name;
}

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

// Reads a whole file; a file that does not exist yet is *present = false, not an error.
Status read_file(const std::string& path, bool* present, std::vector<uint8_t>* out) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) {
    if (errno == ENOENT) {
      *present = false;
      return OkStatus();
    }
    return SystemError("cannot open rendezvous file " + path);
  }
  out->clear();
  uint8_t buffer[4096];
  while (true) {
    ssize_t n = ::read(fd.get(), buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return SystemError("cannot read rendezvous file " + path);
    if (n == 0) break;
    out->insert(out->end(), buffer, buffer + n);
  }
  *present = true;
  return OkStatus();
}

class FileStore : public Store {
 public:
  explicit FileStore(std::string dir) : dir_(std::move(dir)) {}

  Status set(const std::string& key, const std::vector<uint8_t>& value) override {
    static std::atomic<uint64_t> sequence{0};
    const std::string tmp =
        dir_ + "/.tmp." + std::to_string(::getpid()) + "." + std::to_string(sequence.fetch_add(1));
    {
      Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
      if (fd.get() < 0) return SystemError("cannot create rendezvous file " + tmp);
      size_t done = 0;
      while (done < value.size()) {
        ssize_t n = ::write(fd.get(), value.data() + done, value.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return SystemError("cannot write rendezvous file " + tmp);
        done += static_cast<size_t>(n);
      }
    }
    // rename() is atomic: a reader sees the old value or the whole new one.
    if (::rename(tmp.c_str(), path(key).c_str()) != 0)
      return SystemError("cannot publish rendezvous key \"" + key + "\" in " + dir_);
    return OkStatus();
  }

  Status get(const std::string& key, std::chrono::milliseconds timeout,
             std::vector<uint8_t>* value) override {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    auto pause = std::chrono::microseconds(200);
    while (true) {
      bool present = false;
      GP_RETURN_IF_ERROR(read_file(path(key), &present, value));
      if (present) return OkStatus();
      if (std::chrono::steady_clock::now() >= deadline)
        return {Code::kTimeout, "rendezvous key \"" + key + "\" did not appear in " + dir_ +
                                    " within " + std::to_string(timeout.count()) + " ms"};
      std::this_thread::sleep_for(pause);
      pause = std::min(pause * 2, std::chrono::microseconds(20000));
    }
  }

  Status add(const std::string& key, int64_t delta, int64_t* result) override {
    const std::string lock_path = dir_ + "/.lock";
    Fd lock(::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
    if (lock.get() < 0) return SystemError("cannot open " + lock_path);
    while (::flock(lock.get(), LOCK_EX) != 0) {
      if (errno != EINTR) return SystemError("cannot lock " + lock_path);
    }
    // Released when `lock` closes.
    bool present = false;
    std::vector<uint8_t> bytes;
    GP_RETURN_IF_ERROR(read_file(path(key), &present, &bytes));
    int64_t current = 0;
    if (present && !parse_counter(bytes, &current))
      return InvalidArgument("rendezvous key \"" + key + "\" does not hold a counter");
    current += delta;
    GP_RETURN_IF_ERROR(set(key, counter_bytes(current)));
    *result = current;
    return OkStatus();
  }

 private:
  std::string path(const std::string& key) const { return dir_ + "/" + file_name(key); }
  std::string dir_;
};

Status make_directories(const std::string& dir) {
  for (size_t pos = 1; pos <= dir.size(); ++pos) {
    if (pos != dir.size() && dir[pos] != '/') continue;
    const std::string prefix = dir.substr(0, pos);
    if (::mkdir(prefix.c_str(), 0755) != 0 && errno != EEXIST)
      return SystemError("cannot create rendezvous directory " + prefix);
  }
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    return InvalidArgument("rendezvous path " + dir + " is not a directory");
  return OkStatus();
}

}  // namespace

Status make_file_store(const std::string& directory, std::shared_ptr<Store>* out) {
  if (directory.empty()) return InvalidArgument("file rendezvous needs a directory path");
  GP_RETURN_IF_ERROR(make_directories(directory));
  *out = std::make_shared<FileStore>(directory);
  return OkStatus();
}

}  // namespace gradpack
