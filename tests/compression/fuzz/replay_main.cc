// SPDX-License-Identifier: Apache-2.0
// decode_fuzz_replay: runs the fuzz target over a corpus without libFuzzer, so every build (gcc,
// no sanitizer runtime needed) checks the decoder against the same invariants. Each file is
// tried as it is and then in N deterministic mutations (bit flips, truncations, inserted,
// overwritten and deleted bytes, header fields set to edge values), the same on every run.
//
// usage: decode_fuzz_replay [--mutations N] [--seed S] PATH...
//   PATH is a file or a directory (its regular files, in name order).
// On a crash or a broken invariant the input being tried is written to
// decode_fuzz_replay-crash.bin in the working directory (run the fuzzer or this program on it to
// reproduce) and the process dies with the signal.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

constexpr size_t kHeaderBytes = 56;
constexpr size_t kMaxLen = 65536;  // as the libFuzzer run's -max_len
constexpr const char* kCrashFile = "decode_fuzz_replay-crash.bin";

// The input being tried, for the crash handler (which may only use async-signal-safe calls).
const uint8_t* g_data = nullptr;
size_t g_size = 0;
char g_what[512] = "";

void on_crash(int sig) {
  const int fd = ::open(kCrashFile, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd >= 0) {
    size_t done = 0;
    while (done < g_size) {
      const ssize_t n = ::write(fd, g_data + done, g_size - done);
      if (n <= 0) break;
      done += static_cast<size_t>(n);
    }
    ::close(fd);
  }
  const char head[] = "decode_fuzz_replay: crashed on ";
  const char tail[] = "; the input is in decode_fuzz_replay-crash.bin\n";
  (void)!::write(2, head, sizeof head - 1);
  (void)!::write(2, g_what, std::strlen(g_what));
  (void)!::write(2, tail, sizeof tail - 1);
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  size_t below(size_t n) { return n == 0 ? 0 : static_cast<size_t>(next() % n); }

 private:
  uint64_t state_;
};

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 0xCBF29CE484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001B3ull;
  return h;
}

// A position, biased towards the header, where most of the format's decisions are.
size_t pick_position(Rng& rng, size_t size) {
  if (size > kHeaderBytes && rng.below(2) == 0) return rng.below(kHeaderBytes);
  return rng.below(size);
}

void put_u64(std::vector<uint8_t>& d, size_t at, uint64_t v) {
  for (size_t i = 0; i < 8 && at + i < d.size(); ++i)
    d[at + i] = static_cast<uint8_t>(v >> (8 * i));
}

// One to three stacked mutations.
std::vector<uint8_t> mutate(const std::vector<uint8_t>& in, Rng& rng) {
  std::vector<uint8_t> d = in;
  static constexpr uint8_t kBytes[] = {0x00, 0x01, 0x02, 0x07, 0x08, 0x10, 0x7F, 0x80, 0xFE, 0xFF};
  const int rounds = 1 + static_cast<int>(rng.below(3));
  for (int r = 0; r < rounds; ++r) {
    switch (rng.below(8)) {
      case 0:  // flip one to four bits
        if (!d.empty())
          for (size_t k = 0, n = 1 + rng.below(4); k < n; ++k)
            d[pick_position(rng, d.size())] ^= static_cast<uint8_t>(1u << rng.below(8));
        break;
      case 1:  // truncate
        d.resize(rng.below(d.size() + 1));
        break;
      case 2: {  // insert 1..8 random bytes
        const size_t at = rng.below(d.size() + 1);
        std::vector<uint8_t> bytes(1 + rng.below(8));
        for (uint8_t& b : bytes) b = static_cast<uint8_t>(rng.next());
        d.insert(d.begin() + static_cast<std::ptrdiff_t>(at), bytes.begin(), bytes.end());
        break;
      }
      case 3:  // overwrite a byte with an edge value
        if (!d.empty()) d[pick_position(rng, d.size())] = kBytes[rng.below(std::size(kBytes))];
        break;
      case 4: {  // a header count/length field (count, kept, index bytes, payload) to an edge value
        static constexpr size_t kFields[] = {16, 24, 32, 40};
        const size_t at = kFields[rng.below(std::size(kFields))];
        uint64_t old = 0;
        for (size_t i = 0; i < 8 && at + i < d.size(); ++i)
          old |= static_cast<uint64_t>(d[at + i]) << (8 * i);
        const uint64_t values[] = {0,
                                   1,
                                   old + 1,
                                   old - 1,
                                   old * 2,
                                   old / 2,
                                   uint64_t{1} << 56,
                                   (uint64_t{1} << 56) + 1,
                                   ~uint64_t{0},
                                   uint64_t{1} << 63};
        put_u64(d, at, values[rng.below(std::size(values))]);
        break;
      }
      case 5: {  // delete a range
        if (d.empty()) break;
        const size_t at = rng.below(d.size());
        const size_t n = 1 + rng.below(std::min<size_t>(16, d.size() - at));
        d.erase(d.begin() + static_cast<std::ptrdiff_t>(at),
                d.begin() + static_cast<std::ptrdiff_t>(at + n));
        break;
      }
      case 6: {  // append a few bytes
        for (size_t k = 0, n = 1 + rng.below(8); k < n; ++k)
          d.push_back(static_cast<uint8_t>(rng.next()));
        break;
      }
      case 7:  // a random byte anywhere
        if (!d.empty()) d[rng.below(d.size())] = static_cast<uint8_t>(rng.next());
        break;
    }
    if (d.size() > kMaxLen) d.resize(kMaxLen);
  }
  return d;
}

void run_one(const std::vector<uint8_t>& input, const std::string& what) {
  std::snprintf(g_what, sizeof g_what, "%s", what.c_str());
  // An exactly-sized heap copy, as libFuzzer passes it.
  std::unique_ptr<uint8_t[]> copy(new uint8_t[std::max<size_t>(input.size(), 1)]);
  if (!input.empty()) std::memcpy(copy.get(), input.data(), input.size());
  g_data = copy.get();
  g_size = input.size();
  LLVMFuzzerTestOneInput(copy.get(), input.size());
}

int usage(const char* why) {
  std::fprintf(stderr,
               "decode_fuzz_replay: %s\nusage: decode_fuzz_replay [--mutations N] [--seed S] "
               "PATH...\n",
               why);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  size_t mutations = 100;
  uint64_t seed = 1;
  std::vector<std::filesystem::path> files;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--mutations" || arg == "--seed") {
      if (i + 1 >= argc) return usage((arg + " needs a value").c_str());
      char* end = nullptr;
      const unsigned long long v = std::strtoull(argv[++i], &end, 0);
      if (end == argv[i] || *end != '\0') return usage((arg + " needs a number").c_str());
      (arg == "--mutations" ? mutations : seed) = v;
      continue;
    }
    if (arg.starts_with("-")) return usage(("unknown option " + arg).c_str());
    std::error_code ec;
    if (std::filesystem::is_directory(arg, ec)) {
      std::vector<std::filesystem::path> found;
      for (const auto& entry : std::filesystem::directory_iterator(arg, ec))
        if (entry.is_regular_file()) found.push_back(entry.path());
      std::sort(found.begin(), found.end());
      files.insert(files.end(), found.begin(), found.end());
    } else if (std::filesystem::is_regular_file(arg, ec)) {
      files.emplace_back(arg);
    } else {
      std::fprintf(stderr, "decode_fuzz_replay: %s is neither a file nor a directory\n",
                   arg.c_str());
      return 1;
    }
  }
  if (files.empty()) return usage("no input files");

  for (int sig : {SIGABRT, SIGSEGV, SIGBUS, SIGFPE, SIGILL}) std::signal(sig, on_crash);

  size_t runs = 0;
  for (const auto& path : files) {
    std::ifstream file(path, std::ios::binary);
    std::vector<uint8_t> input((std::istreambuf_iterator<char>(file)),
                               std::istreambuf_iterator<char>());
    if (!file.good() && !file.eof()) {
      std::fprintf(stderr, "decode_fuzz_replay: cannot read %s\n", path.c_str());
      return 1;
    }
    const std::string name = path.filename().string();
    run_one(input, name);
    ++runs;
    Rng rng(seed ^ fnv1a(name));
    for (size_t m = 0; m < mutations; ++m) {
      run_one(mutate(input, rng), name + " mutation " + std::to_string(m));
      ++runs;
    }
  }
  std::printf(
      "decode_fuzz_replay: %zu files, %zu inputs (%zu mutations each, seed %llu): "
      "no crash, no broken invariant\n",
      files.size(), runs, mutations, static_cast<unsigned long long>(seed));
  return 0;
}
