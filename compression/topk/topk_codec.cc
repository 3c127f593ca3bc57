// Top-k sparsification: being written.
#include "compression/codec_impl.h"

namespace gradpack {
size_t topk_max_payload(const CodecSpec&, size_t count) { return count * 8; }
Status topk_encode(const EncodeArgs&) { return Unsupported("top-k is not built yet"); }
Status topk_decode(const DecodeArgs&) { return Unsupported("top-k is not built yet"); }
}  // namespace gradpack
