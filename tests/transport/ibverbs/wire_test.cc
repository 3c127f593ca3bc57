// SPDX-License-Identifier: Apache-2.0
// The ib handle, bootstrap and control message codecs, and the pure device helpers.
#include <gtest/gtest.h>

#include <cstring>

#include "transport/ibverbs/device.h"
#include "transport/ibverbs/listener.h"

namespace gradpack::transport {
namespace {

IbHandle sample_handle() {
  IbHandle h;
  h.family = 4;
  h.port = 40123;
  h.address[0] = 10;
  h.address[1] = 1;
  h.address[2] = 2;
  h.address[3] = 3;
  for (size_t i = 0; i < kIbKeyBytes; ++i) h.key[i] = static_cast<uint8_t>(0xa0 + i);
  return h;
}

TEST(IbWire, HandleRoundTrip) {
  Handle handle;
  encode_handle(sample_handle(), &handle);
  IbHandle back;
  ASSERT_TRUE(decode_handle(handle, &back).ok());
  EXPECT_EQ(back.family, 4);
  EXPECT_EQ(back.port, 40123);
  EXPECT_EQ(std::memcmp(back.address, sample_handle().address, 16), 0);
  EXPECT_TRUE(same_key(back.key, sample_handle().key));
  for (size_t i = kIbHandleUsedBytes; i < kHandleBytes; ++i) EXPECT_EQ(handle.bytes[i], 0) << i;
}

TEST(IbWire, ForeignHandlesAreCorruptData) {
  Handle zero;
  IbHandle out;
  EXPECT_EQ(decode_handle(zero, &out).code(), Code::kCorruptData);
  Handle handle;
  encode_handle(sample_handle(), &handle);
  Handle bad_version = handle;
  bad_version.bytes[4] = 9;
  EXPECT_EQ(decode_handle(bad_version, &out).code(), Code::kCorruptData);
  Handle bad_family = handle;
  bad_family.bytes[6] = 5;
  EXPECT_EQ(decode_handle(bad_family, &out).code(), Code::kCorruptData);
  Handle no_port = handle;
  no_port.bytes[8] = 0;
  no_port.bytes[9] = 0;
  EXPECT_EQ(decode_handle(no_port, &out).code(), Code::kCorruptData);
}

TEST(IbWire, KeysCompareExactly) {
  uint8_t a[kIbKeyBytes], b[kIbKeyBytes];
  ASSERT_TRUE(random_key(a).ok());
  std::memcpy(b, a, kIbKeyBytes);
  EXPECT_TRUE(same_key(a, b));
  b[kIbKeyBytes - 1] ^= 1;
  EXPECT_FALSE(same_key(a, b));
  uint8_t c[kIbKeyBytes];
  ASSERT_TRUE(random_key(c).ok());
  EXPECT_FALSE(same_key(a, c));  // 2^-128
}

TEST(IbWire, ConnectMessageRoundTrip) {
  ConnectMsg msg;
  std::memcpy(msg.key, sample_handle().key, kIbKeyBytes);
  msg.hello = 0x0123456789abcdefULL;
  msg.qp.qpn = 0x00abcdef;
  msg.qp.psn = 0x00123456;
  msg.qp.lid = 0x1234;
  msg.qp.mtu = IBV_MTU_4096;
  msg.qp.link_layer = IBV_LINK_LAYER_ETHERNET;
  for (int i = 0; i < 16; ++i) msg.qp.gid[i] = static_cast<uint8_t>(i * 7);
  uint8_t bytes[kConnectMsgBytes];
  encode_connect(msg, bytes);
  ConnectMsg back;
  ASSERT_TRUE(decode_connect(bytes, &back).ok());
  EXPECT_TRUE(same_key(back.key, msg.key));
  EXPECT_EQ(back.hello, msg.hello);
  EXPECT_EQ(back.qp.qpn, msg.qp.qpn);
  EXPECT_EQ(back.qp.psn, msg.qp.psn);
  EXPECT_EQ(back.qp.lid, msg.qp.lid);
  EXPECT_EQ(back.qp.mtu, msg.qp.mtu);
  EXPECT_EQ(back.qp.link_layer, msg.qp.link_layer);
  EXPECT_EQ(std::memcmp(back.qp.gid, msg.qp.gid, 16), 0);
  bytes[0] ^= 0xff;
  EXPECT_EQ(decode_connect(bytes, &back).code(), Code::kCorruptData);
}

TEST(IbWire, AcceptMessageRoundTrip) {
  QpInfo qp;
  qp.qpn = 77;
  qp.psn = 0xffffff;
  qp.lid = 3;
  qp.mtu = IBV_MTU_1024;
  qp.link_layer = IBV_LINK_LAYER_INFINIBAND;
  uint8_t bytes[kAcceptMsgBytes];
  encode_accept(qp, bytes);
  QpInfo back;
  ASSERT_TRUE(decode_accept(bytes, &back).ok());
  EXPECT_EQ(back.qpn, 77u);
  EXPECT_EQ(back.psn, 0xffffffu);
  EXPECT_EQ(back.lid, 3);
  EXPECT_EQ(back.mtu, IBV_MTU_1024);
  uint8_t connect_bytes[kConnectMsgBytes] = {};
  encode_connect(ConnectMsg{}, connect_bytes);
  EXPECT_EQ(decode_accept(connect_bytes, &back).code(), Code::kCorruptData);
}

TEST(IbWire, ControlMessageRoundTrip) {
  CtrlMsg msg;
  msg.type = CtrlType::kCts;
  msg.seq = 41;
  msg.tag = 0xfeedface12345678ULL;
  msg.addr = 0x7fff00001000ULL;
  msg.size = uint64_t{5} << 32;
  msg.rkey = 0xdeadbeef;
  msg.status = 2;
  uint8_t bytes[kCtrlSlotBytes];
  encode_ctrl(msg, bytes);
  CtrlMsg back;
  ASSERT_TRUE(decode_ctrl(bytes, &back).ok());
  EXPECT_EQ(back.type, CtrlType::kCts);
  EXPECT_EQ(back.seq, 41u);
  EXPECT_EQ(back.tag, msg.tag);
  EXPECT_EQ(back.addr, msg.addr);
  EXPECT_EQ(back.size, msg.size);
  EXPECT_EQ(back.rkey, msg.rkey);
  EXPECT_EQ(back.status, 2u);
  bytes[0] = 9;
  EXPECT_EQ(decode_ctrl(bytes, &back).code(), Code::kCorruptData);
}

TEST(IbDeviceHelpers, SpeedFromCodes) {
  EXPECT_EQ(ib_speed_mbps(1, 1), 2500);      // SDR 1x
  EXPECT_EQ(ib_speed_mbps(4, 2), 40000);     // QDR 4x
  EXPECT_EQ(ib_speed_mbps(32, 2), 100000);   // EDR 4x
  EXPECT_EQ(ib_speed_mbps(64, 2), 200000);   // HDR 4x
  EXPECT_EQ(ib_speed_mbps(128, 2), 400000);  // NDR 4x
  EXPECT_EQ(ib_speed_mbps(64, 16), 100000);  // HDR 2x
  EXPECT_EQ(ib_speed_mbps(3, 2), 0);         // unknown speed code
}

GidCandidate gid(int index, const char* type, std::initializer_list<uint8_t> bytes) {
  GidCandidate c;
  c.index = index;
  c.type = type;
  int i = 0;
  for (uint8_t b : bytes) c.gid.raw[i++] = b;
  return c;
}

TEST(IbDeviceHelpers, RoceGidPrefersV2Ipv4) {
  const GidCandidate link_local_v1 = gid(0, "IB/RoCE v1", {0xfe, 0x80, 0, 0, 0, 0, 0, 0, 1, 2});
  const GidCandidate link_local_v2 = gid(1, "RoCE v2", {0xfe, 0x80, 0, 0, 0, 0, 0, 0, 1, 2});
  const GidCandidate v4_v1 =
      gid(2, "IB/RoCE v1", {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 1});
  const GidCandidate v4_v2 =
      gid(3, "RoCE v2", {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 1});
  const GidCandidate global_v6_v2 =
      gid(4, "RoCE v2", {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1});
  const GidCandidate empty = gid(5, "RoCE v2", {});
  EXPECT_EQ(pick_roce_gid({link_local_v1, link_local_v2, v4_v1, v4_v2, global_v6_v2}), 3);
  EXPECT_EQ(pick_roce_gid({link_local_v1, link_local_v2, global_v6_v2}), 4);
  EXPECT_EQ(pick_roce_gid({link_local_v1, link_local_v2}), 1);
  EXPECT_EQ(pick_roce_gid({link_local_v1, v4_v1}), 0);
  EXPECT_EQ(pick_roce_gid({empty}), -1);
  EXPECT_EQ(pick_roce_gid({}), -1);
}

}  // namespace
}  // namespace gradpack::transport
