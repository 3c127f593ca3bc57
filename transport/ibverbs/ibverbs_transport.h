// SPDX-License-Identifier: Apache-2.0
// The ibverbs backend of the transport interface (transport/transport.h): RC queue
// pairs, a registration cache, libibverbs loaded at run time (dlopen), so a machine without it, or
// without an RDMA device, gets a transport with zero devices rather than a load failure.
// docs/transport-ib.md describes the protocol.
#pragma once

#include <memory>
#include <string>

#include "transport/gdr.h"
#include "transport/transport.h"

namespace gradpack::transport {

// kOk with a transport of zero devices when libibverbs or an active port is missing; the log at
// info level says which.
Status make_ibverbs_transport(std::unique_ptr<Transport>* out);

// The same, loading `library` (a dlopen name or path) instead of libibverbs.so.1: tests point it
// at a missing file or at a library without the verbs symbols.
Status make_ibverbs_transport_from(const std::string& library, std::unique_ptr<Transport>* out);

struct VerbsApi;
// Builds over an already loaded (or, in tests, a fake) VerbsApi; listeners publish
// `bootstrap_address` ("" for the default interface); `gdr` is GRADPACK_GDR (the other two read
// it from the environment). Only in builds with ibverbs.
Status make_ibverbs_transport_with(std::shared_ptr<const VerbsApi> api,
                                   const std::string& bootstrap_address,
                                   std::unique_ptr<Transport>* out, GdrMode gdr = GdrMode::kAuto);

}  // namespace gradpack::transport
