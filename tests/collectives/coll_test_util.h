// SPDX-License-Identifier: Apache-2.0
// Helpers of the collective tests: ranks on threads over loopback TCP, typed values as doubles.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include "api/allreduce_options.h"
#include "collectives/communicator.h"
#include "collectives/rendezvous/store.h"
#include "common/dtype.h"
#include "common/float16.h"
#include "transport/tcp/tcp_transport.h"

namespace gradpack::coll::testing {

// An all-reduce the way gp_allreduce makes it: the C options read by the C ABI, then the
// communicator (the tests that check the options' errors go through here).
inline Status allreduce_c(Communicator& comm, const void* send, void* recv, size_t count,
                          gp_dtype_t dtype, gp_redop_t op, const gp_allreduce_opts_t* opts) {
  AllreduceOptions options;
  GP_RETURN_IF_ERROR(api::from_c_options(opts, &options));
  return comm.allreduce(send, recv, count, dtype, op, options);
}

inline double load_value(gp_dtype_t dtype, const void* p, size_t i) {
  switch (dtype) {
    case GP_FLOAT32:
      return static_cast<const float*>(p)[i];
    case GP_FLOAT16:
      return f16_to_f32(static_cast<const uint16_t*>(p)[i]);
    case GP_BFLOAT16:
      return bf16_to_f32(static_cast<const uint16_t*>(p)[i]);
    case GP_FLOAT64:
      return static_cast<const double*>(p)[i];
    case GP_INT32:
      return static_cast<const int32_t*>(p)[i];
    case GP_INT64:
      return static_cast<double>(static_cast<const int64_t*>(p)[i]);
    case GP_INT8:
      return static_cast<const int8_t*>(p)[i];
    case GP_UINT8:
      return static_cast<const uint8_t*>(p)[i];
  }
  return NAN;
}

inline void store_value(gp_dtype_t dtype, void* p, size_t i, double v) {
  switch (dtype) {
    case GP_FLOAT32:
      static_cast<float*>(p)[i] = static_cast<float>(v);
      break;
    case GP_FLOAT16:
      static_cast<uint16_t*>(p)[i] = f32_to_f16(static_cast<float>(v));
      break;
    case GP_BFLOAT16:
      static_cast<uint16_t*>(p)[i] = f32_to_bf16(static_cast<float>(v));
      break;
    case GP_FLOAT64:
      static_cast<double*>(p)[i] = v;
      break;
    case GP_INT32:
      static_cast<int32_t*>(p)[i] = static_cast<int32_t>(v);
      break;
    case GP_INT64:
      static_cast<int64_t*>(p)[i] = static_cast<int64_t>(v);
      break;
    case GP_INT8:
      static_cast<int8_t*>(p)[i] = static_cast<int8_t>(v);
      break;
    case GP_UINT8:
      static_cast<uint8_t*>(p)[i] = static_cast<uint8_t>(v);
      break;
  }
}

// Small integers, so every op's result is exact in every dtype for up to 6 ranks (products of
// values in {1, 2} stay below 64).
inline double input_value(gp_redop_t op, int rank, size_t i) {
  if (op == GP_PROD) return static_cast<double>(1 + (rank + i) % 2);
  return static_cast<double>(1 + (static_cast<size_t>(rank) * 7 + i * 3) % 5);
}

inline double expected_value(gp_redop_t op, gp_dtype_t dtype, int nranks, size_t i) {
  double acc = input_value(op, 0, i);
  for (int r = 1; r < nranks; ++r) {
    double v = input_value(op, r, i);
    switch (op) {
      case GP_SUM:
      case GP_AVG:
        acc += v;
        break;
      case GP_PROD:
        acc *= v;
        break;
      case GP_MIN:
        acc = std::min(acc, v);
        break;
      case GP_MAX:
        acc = std::max(acc, v);
        break;
    }
  }
  if (op == GP_AVG) {
    bool integer = dtype == GP_INT32 || dtype == GP_INT64 || dtype == GP_INT8 || dtype == GP_UINT8;
    acc = integer ? std::trunc(acc / nranks) : acc / nranks;
  }
  return acc;
}

inline double tolerance(gp_dtype_t dtype, double expected) {
  switch (dtype) {
    case GP_FLOAT16:
      return 1e-3 * std::fabs(expected) + 1e-3;
    case GP_BFLOAT16:
      return 1e-2 * std::fabs(expected) + 1e-2;
    case GP_FLOAT32:
      return 1e-6 * std::fabs(expected);
    default:
      return 0;
  }
}

inline std::unique_ptr<transport::Transport> loopback_transport(int nsocks = 1) {
  transport::TcpOptions options;
  options.ifname = "=lo";
  options.nsocks = nsocks;
  std::unique_ptr<transport::Transport> t;
  Status st = transport::make_tcp_transport(options, &t);
  EXPECT_TRUE(st.ok()) << st.to_string();
  return t;
}

struct RankOptions {
  int nsocks = 1;
  std::chrono::milliseconds timeout{10000};
  // host_ids[r] for rank r ("" = one host per rank).
  std::vector<std::string> host_ids;
  // The transport of rank r (default: loopback TCP).
  std::function<std::unique_ptr<transport::Transport>(int)> transport;
  // The cluster probe's options (unset: the settings').
  std::optional<topology::ProbeOptions> probe;
};

// Runs body(comm) on nranks threads, each with its own communicator over loopback TCP.
inline void run_ranks(int nranks, const std::function<void(Communicator&)>& body,
                      const RankOptions& ro = {}) {
  auto store = make_memory_store();
  std::vector<std::thread> threads;
  for (int r = 0; r < nranks; ++r) {
    threads.emplace_back([&, r] {
      CommOptions options;
      options.transport = ro.transport ? ro.transport(r) : loopback_transport(ro.nsocks);
      options.timeout = ro.timeout;
      options.host_id = ro.host_ids.empty() ? "host" + std::to_string(r) : ro.host_ids[r];
      options.probe = ro.probe;
      std::unique_ptr<Communicator> comm;
      Status st = Communicator::create(r, nranks, store, std::move(options), &comm);
      ASSERT_TRUE(st.ok()) << "rank " << r << ": " << st.to_string();
      body(*comm);
    });
  }
  for (auto& t : threads) t.join();
}

}  // namespace gradpack::coll::testing
