// SPDX-License-Identifier: Apache-2.0
#include "tools/train/fmnist_data.h"

#include <sys/stat.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <type_traits>

namespace gradpack::train {
namespace {

// IDX magic numbers: two zero bytes, the element type (0x08 unsigned byte), the number of
// dimensions.
constexpr uint32_t kImagesMagic = 0x00000803;
constexpr uint32_t kLabelsMagic = 0x00000801;
constexpr const char* kPackageHint =
    "install the Debian package dataset-fashion-mnist (scripts/setup.sh does), or point --data at "
    "a directory holding the Fashion-MNIST IDX files";

struct GzCloser {
  void operator()(gzFile f) const { gzclose(f); }
};
using GzFile = std::unique_ptr<std::remove_pointer_t<gzFile>, GzCloser>;

bool exists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

// An IDX file of the set: the .gz name if present, else the plain one. gzread reads an
// uncompressed file as it is, so both go through zlib.
std::string find_file(const std::string& dir, const std::string& name) {
  std::string gz = dir + "/" + name + ".gz";
  if (exists(gz)) return gz;
  std::string plain = dir + "/" + name;
  if (exists(plain)) return plain;
  return gz;  // named in the error
}

class IdxReader {
 public:
  explicit IdxReader(std::string path) : path_(std::move(path)) {}

  std::optional<std::string> open() {
    errno = 0;
    file_.reset(gzopen(path_.c_str(), "rb"));
    if (!file_) {
      return "cannot open " + path_ + " (" + (errno != 0 ? std::strerror(errno) : "zlib failed") +
             "): " + kPackageHint;
    }
    return std::nullopt;
  }

  // Reads exactly `bytes` bytes; a short read or a gzip error is an error naming `what`.
  std::optional<std::string> read(void* out, size_t bytes, const char* what) {
    auto* dst = static_cast<unsigned char*>(out);
    size_t done = 0;
    while (done < bytes) {
      // gzread takes an unsigned count: read in pieces of at most 1 GiB.
      const unsigned chunk = static_cast<unsigned>(std::min<size_t>(bytes - done, size_t{1} << 30));
      const int n = gzread(file_.get(), dst + done, chunk);
      if (n < 0) {
        int code = 0;
        const char* msg = gzerror(file_.get(), &code);
        return path_ + " is corrupt (" + (msg != nullptr ? msg : "zlib error") + " while reading " +
               what + "): " + kPackageHint;
      }
      if (n == 0) {
        return path_ + " is truncated: " + std::to_string(bytes) + " bytes of " + what +
               " expected, " + std::to_string(done) + " found: " + kPackageHint;
      }
      done += static_cast<size_t>(n);
    }
    return std::nullopt;
  }

  std::optional<std::string> read_u32(uint32_t* out, const char* what) {
    unsigned char b[4];
    if (auto err = read(b, sizeof(b), what)) return err;
    *out = (uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) | (uint32_t{b[2]} << 8) | b[3];
    return std::nullopt;
  }

  std::string corrupt(const std::string& detail) const {
    return path_ + " is not a Fashion-MNIST IDX file: " + detail + ": " + kPackageHint;
  }

 private:
  std::string path_;
  GzFile file_;
};

std::string hex(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "0x%08x", v);
  return buf;
}

}  // namespace

std::optional<std::string> load_image_set(const std::string& dir, const std::string& prefix,
                                          size_t limit, ImageSet* out) {
  IdxReader images(find_file(dir, prefix + "-images-idx3-ubyte"));
  IdxReader labels(find_file(dir, prefix + "-labels-idx1-ubyte"));
  if (auto err = images.open()) return err;
  if (auto err = labels.open()) return err;

  uint32_t magic = 0, count = 0, rows = 0, cols = 0;
  if (auto err = images.read_u32(&magic, "the header")) return err;
  if (magic != kImagesMagic) {
    return images.corrupt("magic " + hex(magic) + ", expected " + hex(kImagesMagic));
  }
  if (auto err = images.read_u32(&count, "the header")) return err;
  if (auto err = images.read_u32(&rows, "the header")) return err;
  if (auto err = images.read_u32(&cols, "the header")) return err;
  if (rows != kImageSide || cols != kImageSide) {
    return images.corrupt("images of " + std::to_string(rows) + " x " + std::to_string(cols) +
                          " pixels, expected 28 x 28");
  }
  uint32_t label_magic = 0, label_count = 0;
  if (auto err = labels.read_u32(&label_magic, "the header")) return err;
  if (label_magic != kLabelsMagic) {
    return labels.corrupt("magic " + hex(label_magic) + ", expected " + hex(kLabelsMagic));
  }
  if (auto err = labels.read_u32(&label_count, "the header")) return err;
  if (label_count != count) {
    return labels.corrupt(std::to_string(label_count) + " labels for " + std::to_string(count) +
                          " images");
  }
  if (count == 0) return images.corrupt("no images");

  const size_t keep = limit == 0 ? count : std::min<size_t>(limit, count);
  out->count = keep;
  out->pixels.resize(keep * kImagePixels);
  out->labels.resize(keep);
  if (auto err = images.read(out->pixels.data(), out->pixels.size(), "pixels")) return err;
  if (auto err = labels.read(out->labels.data(), out->labels.size(), "labels")) return err;
  for (size_t i = 0; i < keep; ++i) {
    if (out->labels[i] >= kClasses) {
      return labels.corrupt("label " + std::to_string(out->labels[i]) + " of image " +
                            std::to_string(i) + " is not a class 0..9");
    }
  }
  return std::nullopt;
}

}  // namespace gradpack::train
