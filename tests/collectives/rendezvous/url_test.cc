// SPDX-License-Identifier: Apache-2.0
#include "collectives/rendezvous/url.h"

#include <gtest/gtest.h>

namespace gradpack {
namespace {

TEST(RendezvousUrl, TcpAndFile) {
  RendezvousUrl u;
  ASSERT_TRUE(parse_rendezvous_url("tcp://10.1.2.3:29500", &u).ok());
  EXPECT_EQ(u.kind, RendezvousUrl::Kind::kTcp);
  EXPECT_EQ(u.host, "10.1.2.3");
  EXPECT_EQ(u.port, 29500);
  ASSERT_TRUE(parse_rendezvous_url("tcp://node-07.cluster:1", &u).ok());
  EXPECT_EQ(u.host, "node-07.cluster");
  ASSERT_TRUE(parse_rendezvous_url("tcp://[fe80::1]:65535", &u).ok());
  EXPECT_EQ(u.host, "fe80::1");
  EXPECT_EQ(u.port, 65535);
  ASSERT_TRUE(parse_rendezvous_url("file:///shared/job42/rdzv", &u).ok());
  EXPECT_EQ(u.kind, RendezvousUrl::Kind::kFile);
  EXPECT_EQ(u.path, "/shared/job42/rdzv");
}

TEST(RendezvousUrl, MalformedOnesSayWhy) {
  struct Case {
    const char* url;
    const char* why;
  };
  for (Case c : {Case{"", "no scheme"}, Case{"10.0.0.1:29500", "no scheme"},
                 Case{"http://h:1", "unknown scheme \"http\""}, Case{"tcp://host", "no port"},
                 Case{"tcp://:29500", "no host"}, Case{"tcp://h:0", "1..65535"},
                 Case{"tcp://h:70000", "1..65535"}, Case{"tcp://h:29x", "\"29x\""},
                 Case{"tcp://h:", "1..65535"}, Case{"tcp://fe80::1:5", "brackets"},
                 Case{"tcp://[::1", "unclosed"}, Case{"tcp://[::1]", "no port"},
                 Case{"tcp://a/b:1", "bad character"}, Case{"file://relative/dir", "absolute"},
                 Case{"file://", "absolute"}}) {
    RendezvousUrl u;
    Status st = parse_rendezvous_url(c.url, &u);
    EXPECT_EQ(st.code(), Code::kInvalidArgument) << c.url;
    EXPECT_NE(st.message().find(c.why), std::string::npos) << c.url << ": " << st.message();
    EXPECT_NE(st.message().find(std::string("\"") + c.url + "\""), std::string::npos) << c.url;
  }
}

}  // namespace
}  // namespace gradpack
