// SPDX-License-Identifier: Apache-2.0
// gradpack-perf's command line, size sweep, bandwidth formulas and report lines.
#include "tools/perf_options.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace gradpack::tools {
namespace {

std::optional<std::string> parse(std::vector<const char*> args, PerfOptions* opts) {
  args.insert(args.begin(), "gradpack-perf");
  return parse_perf_args(static_cast<int>(args.size()), args.data(), opts);
}

TEST(PerfOptions, DefaultsAreNcclTests) {
  PerfOptions o;
  ASSERT_EQ(parse({}, &o), std::nullopt);
  EXPECT_EQ(o.min_bytes, 32u << 20);
  EXPECT_EQ(o.max_bytes, 32u << 20);
  EXPECT_EQ(o.step_factor, 0u);
  EXPECT_EQ(o.step_bytes, 1u << 20);
  EXPECT_EQ(o.iters, 20);
  EXPECT_EQ(o.warmup, 1);
  EXPECT_EQ(o.check, 1);
  EXPECT_EQ(o.ops, std::vector<gp_redop_t>{GP_SUM});
  EXPECT_EQ(o.dtypes, std::vector<gp_dtype_t>{GP_FLOAT32});
  EXPECT_EQ(o.root, 0);
  EXPECT_EQ(o.algorithm, GP_ALGO_AUTO);
  EXPECT_EQ(o.collective, Collective::kAllReduce);
  EXPECT_EQ(o.codec, "");
  EXPECT_FALSE(compressed(o));
  EXPECT_TRUE(o.error_feedback);
  EXPECT_FALSE(o.json);
}

TEST(PerfOptions, ShortAndLongFlags) {
  PerfOptions o;
  ASSERT_EQ(parse({"-b",    "8",  "-e1M", "-f",   "4",
                   "-n",    "2",  "-w",   "0",    "-c",
                   "0",     "-o", "max",  "-d",   "bfloat16",
                   "-r",    "2",  "-a",   "hier", "--collective=broadcast",
                   "--json"},
                  &o),
            std::nullopt);
  EXPECT_EQ(o.min_bytes, 8u);
  EXPECT_EQ(o.max_bytes, 1u << 20);
  EXPECT_EQ(o.step_factor, 4u);
  EXPECT_EQ(o.iters, 2);
  EXPECT_EQ(o.warmup, 0);
  EXPECT_EQ(o.check, 0);
  EXPECT_EQ(o.ops, std::vector<gp_redop_t>{GP_MAX});
  EXPECT_EQ(o.dtypes, std::vector<gp_dtype_t>{GP_BFLOAT16});
  EXPECT_EQ(o.root, 2);
  EXPECT_EQ(o.algorithm, GP_ALGO_HIER);
  EXPECT_EQ(o.collective, Collective::kBroadcast);
  EXPECT_TRUE(o.json);

  PerfOptions l;
  ASSERT_EQ(
      parse({"--minbytes", "1K", "--maxbytes=2G", "--stepbytes", "512", "--iters=3", "--datatype",
             "int8", "--op", "prod", "--algorithm", "ring", "-C", "reduce_scatter"},
            &l),
      std::nullopt);
  EXPECT_EQ(l.min_bytes, 1024u);
  EXPECT_EQ(l.max_bytes, uint64_t{2} << 30);
  EXPECT_EQ(l.step_bytes, 512u);
  EXPECT_EQ(l.iters, 3);
  EXPECT_EQ(l.dtypes, std::vector<gp_dtype_t>{GP_INT8});
  EXPECT_EQ(l.ops, std::vector<gp_redop_t>{GP_PROD});
  EXPECT_EQ(l.algorithm, GP_ALGO_RING);
  EXPECT_EQ(l.collective, Collective::kReduceScatter);
}

TEST(PerfOptions, AllOpsAndTypes) {
  PerfOptions o;
  ASSERT_EQ(parse({"-o", "all", "-d", "all"}, &o), std::nullopt);
  EXPECT_EQ(o.ops.size(), 5u);
  EXPECT_EQ(o.dtypes.size(), 8u);
  EXPECT_EQ(o.dtypes.front(), GP_INT8);
}

TEST(PerfOptions, UsageErrors) {
  const std::vector<std::vector<const char*>> bad = {
      {"-b"},        {"-b", "x"},    {"-b", "1T"},         {"-e", "4", "-b", "8"},
      {"-f", "1"},   {"-i", "0"},    {"-n", "0"},          {"-o", "mean"},
      {"-d", "fp8"}, {"-a", "fast"}, {"-C", "all_to_all"}, {"--json=1"},
      {"--bogus"},   {"extra"},      {"-r", "-1"},
  };
  for (const auto& args : bad) {
    PerfOptions o;
    EXPECT_NE(parse(args, &o), std::nullopt) << args.front();
  }
  PerfOptions o;
  auto err = parse({"-C", "all_to_all"}, &o);
  ASSERT_TRUE(err.has_value());
  EXPECT_NE(err->find("sendrecv"), std::string::npos) << *err;  // the list of collectives
}

TEST(PerfOptions, CodecFlags) {
  PerfOptions o;
  ASSERT_EQ(parse({"-z", "q8"}, &o), std::nullopt);
  EXPECT_EQ(o.codec, "q8");
  EXPECT_TRUE(compressed(o));
  EXPECT_TRUE(o.error_feedback);

  PerfOptions l;
  ASSERT_EQ(parse({"--codec=topk:0.01+q8:block=64", "--error-feedback", "off", "-d", "half", "-o",
                   "avg", "-a", "direct"},
                  &l),
            std::nullopt);
  EXPECT_EQ(l.codec, "topk:0.01+q8:block=64");
  EXPECT_FALSE(l.error_feedback);
  EXPECT_EQ(l.dtypes, std::vector<gp_dtype_t>{GP_FLOAT16});
  EXPECT_EQ(l.algorithm, GP_ALGO_DIRECT);

  PerfOptions a;
  ASSERT_EQ(parse({"-zauto:q4", "--error-feedback=on", "-a", "sparse"}, &a), std::nullopt);
  EXPECT_EQ(a.codec, "auto:q4");
  EXPECT_TRUE(a.error_feedback);
  EXPECT_EQ(a.algorithm, GP_ALGO_SPARSE);
  EXPECT_STREQ(algo_name(GP_ALGO_DIRECT), "direct");
  EXPECT_STREQ(algo_name(GP_ALGO_SPARSE), "sparse");

  // "none" is a codec too, and takes every op and type.
  PerfOptions n;
  ASSERT_EQ(parse({"-z", "none", "-o", "all", "-d", "all"}, &n), std::nullopt);

  for (const char* flag : {"-z,", "--codec", "--error-feedback", "direct", "sparse"}) {
    EXPECT_NE(std::string(kPerfHelp).find(flag), std::string::npos) << flag;
  }
}

TEST(PerfOptions, CodecUsageErrors) {
  struct Case {
    std::vector<const char*> args;
    const char* message;  // a part of the error
  };
  const std::vector<Case> cases = {
      {{"-z"}, "needs a value"},
      {{"-z", ""}, "expected a codec spec"},
      {{"-z", "off"}, "leave -z out"},
      {{"-z", "q8", "-C", "reduce_scatter"}, "all_reduce only"},
      {{"-C", "broadcast", "--codec", "q8"}, "-C broadcast"},
      {{"-z", "q8", "-o", "max"}, "sum or avg, not max"},
      {{"-z", "q4", "-o", "all"}, "sum or avg, not prod"},
      {{"-z", "q8", "-d", "int32"}, "float, half or bfloat16, not int32"},
      {{"-z", "q8", "-d", "double"}, "not double"},
      {{"-z", "q8", "--error-feedback", "yes"}, "expected on or off"},
      {{"-z", "q8", "--error-feedback"}, "needs a value"},
      {{"-E", "on"}, "unknown argument"},  // --error-feedback has no short form
      {{"-a", "star"}, "direct|sparse"},
  };
  for (const Case& c : cases) {
    PerfOptions o;
    const auto err = parse(c.args, &o);
    ASSERT_TRUE(err.has_value()) << c.args.front();
    EXPECT_NE(err->find(c.message), std::string::npos) << *err;
  }
}

TEST(PerfOptions, SendRecvIsACollective) {
  PerfOptions o;
  ASSERT_EQ(parse({"-C", "sendrecv", "-o", "max"}, &o), std::nullopt);
  EXPECT_EQ(o.collective, Collective::kSendRecv);
  EXPECT_STREQ(collective_name(Collective::kSendRecv), "sendrecv");
  EXPECT_FALSE(collective_reduces(Collective::kSendRecv));
  EXPECT_FALSE(collective_has_root(Collective::kSendRecv));
  EXPECT_FALSE(collective_has_in_place(Collective::kSendRecv));
  EXPECT_TRUE(collective_has_in_place(Collective::kAllGather));
  EXPECT_NE(std::string(kPerfHelp).find("sendrecv"), std::string::npos);
  // size = the bytes each rank sends; busbw = algbw (nccl-tests' factor 1) for any rank count.
  const auto s = shape_row(Collective::kSendRecv, 1 << 20, GP_FLOAT32, 3);
  EXPECT_EQ(s.bytes, 1u << 20);
  EXPECT_EQ(s.count, 262144u);
  EXPECT_EQ(s.rank_count, 262144u);
  for (int n : {1, 2, 8}) EXPECT_DOUBLE_EQ(bus_bandwidth_factor(Collective::kSendRecv, n), 1.0);
  const Measurement m = measure(Collective::kSendRecv, 2, 1'000'000'000, 0.5, 0);
  EXPECT_DOUBLE_EQ(m.algbw, 2.0);
  EXPECT_DOUBLE_EQ(m.busbw, 2.0);
}

Row send_recv_row() {
  Row row;
  row.shape = shape_row(Collective::kSendRecv, 1 << 20, GP_FLOAT32, 2);
  row.dtype = GP_FLOAT32;
  row.op = GP_SUM;
  row.coll = Collective::kSendRecv;
  row.root = -1;
  row.out_of_place = measure(Collective::kSendRecv, 2, row.shape.bytes, 104.8576e-6, 0);
  row.in_place.skipped = true;
  return row;
}

TEST(PerfOptions, HelpListsEveryFlag) {
  PerfOptions o;
  ASSERT_EQ(parse({"-h"}, &o), std::nullopt);
  EXPECT_TRUE(o.help);
  const std::string help = kPerfHelp;
  for (const char* flag : {"-b,", "-e,", "-f,", "-i,", "-n,", "-w,", "-c,", "-o,", "-d,", "-r,",
                           "-a,", "-C,", "--json", "--help"}) {
    EXPECT_NE(help.find(flag), std::string::npos) << flag;
  }
}

TEST(PerfOptions, ParseSize) {
  EXPECT_EQ(parse_size("0"), 0u);
  EXPECT_EQ(parse_size("8"), 8u);
  EXPECT_EQ(parse_size("4K"), 4096u);
  EXPECT_EQ(parse_size("32M"), uint64_t{32} << 20);
  EXPECT_EQ(parse_size("8G"), uint64_t{8} << 30);
  EXPECT_EQ(parse_size("1g"), uint64_t{1} << 30);
  EXPECT_EQ(parse_size(""), std::nullopt);
  EXPECT_EQ(parse_size("K"), std::nullopt);
  EXPECT_EQ(parse_size("-1"), std::nullopt);
  EXPECT_EQ(parse_size("1.5M"), std::nullopt);
  EXPECT_EQ(parse_size("99999999999999999999"), std::nullopt);
}

TEST(PerfOptions, SweepSizes) {
  PerfOptions o;
  o.min_bytes = 8;
  o.max_bytes = 1 << 20;
  o.step_factor = 4;
  EXPECT_EQ(sweep_sizes(o),
            (std::vector<uint64_t>{8, 32, 128, 512, 2048, 8192, 32768, 131072, 524288}));
  o.step_factor = 0;
  o.min_bytes = 1000;
  o.max_bytes = 3500;
  o.step_bytes = 1000;
  EXPECT_EQ(sweep_sizes(o), (std::vector<uint64_t>{1000, 2000, 3000}));
  o.min_bytes = o.max_bytes = 0;
  o.step_factor = 2;  // 0 * 2 makes no progress: one row, not an endless loop
  EXPECT_EQ(sweep_sizes(o), (std::vector<uint64_t>{0}));
  PerfOptions d;
  EXPECT_EQ(sweep_sizes(d), (std::vector<uint64_t>{uint64_t{32} << 20}));
}

TEST(PerfOptions, RowShapes) {
  // all_reduce and broadcast: the whole buffer.
  auto s = shape_row(Collective::kAllReduce, 1 << 20, GP_FLOAT32, 3);
  EXPECT_EQ(s.bytes, 1u << 20);
  EXPECT_EQ(s.count, 262144u);
  EXPECT_EQ(s.rank_count, 262144u);
  s = shape_row(Collective::kBroadcast, 10, GP_FLOAT64, 3);
  EXPECT_EQ(s.bytes, 8u);
  EXPECT_EQ(s.count, 1u);
  // reduce_scatter / all_gather: size is the total, rounded down to nranks blocks.
  s = shape_row(Collective::kAllGather, 1 << 20, GP_FLOAT32, 3);
  EXPECT_EQ(s.rank_count, 87381u);
  EXPECT_EQ(s.count, 3u * 87381u);
  EXPECT_EQ(s.bytes, 3u * 87381u * 4u);
  s = shape_row(Collective::kReduceScatter, 8, GP_INT64, 3);
  EXPECT_EQ(s.rank_count, 0u);
  EXPECT_EQ(s.bytes, 0u);
}

TEST(PerfOptions, BusBandwidthFormulas) {
  EXPECT_DOUBLE_EQ(alg_bandwidth(1'000'000'000, 0.5), 2.0);
  EXPECT_DOUBLE_EQ(alg_bandwidth(100, 0), 0.0);
  EXPECT_DOUBLE_EQ(bus_bandwidth_factor(Collective::kAllReduce, 4), 1.5);
  EXPECT_DOUBLE_EQ(bus_bandwidth_factor(Collective::kAllReduce, 1), 0.0);
  EXPECT_DOUBLE_EQ(bus_bandwidth_factor(Collective::kReduceScatter, 4), 0.75);
  EXPECT_DOUBLE_EQ(bus_bandwidth_factor(Collective::kAllGather, 2), 0.5);
  EXPECT_DOUBLE_EQ(bus_bandwidth_factor(Collective::kBroadcast, 8), 1.0);
  const Measurement m = measure(Collective::kAllReduce, 3, 3'000'000'000, 2.0, 0);
  EXPECT_DOUBLE_EQ(m.time_us, 2e6);
  EXPECT_DOUBLE_EQ(m.algbw, 1.5);
  EXPECT_DOUBLE_EQ(m.busbw, 2.0);
  EXPECT_EQ(m.wrong, 0);
}

Row sample_row() {
  Row row;
  row.shape = shape_row(Collective::kAllReduce, 1 << 20, GP_FLOAT32, 4);
  row.dtype = GP_FLOAT32;
  row.op = GP_SUM;
  row.coll = Collective::kAllReduce;
  row.root = -1;
  row.out_of_place = measure(Collective::kAllReduce, 4, row.shape.bytes, 104.8576e-6, 0);
  row.in_place = measure(Collective::kAllReduce, 4, row.shape.bytes, 209.7152e-6, -1);
  return row;
}

TEST(PerfOptions, TableRowLinesUpWithHeader) {
  const std::string header = table_header();
  const std::string row = format_row(sample_row());
  EXPECT_EQ(row,
            "     1048576        262144     float     sum      -1    104.86    10.00    15.00  "
            "     0    209.72     5.00     7.50     N/A\n");
  // Every header line and the row have the same width, so the columns line up.
  size_t start = 0;
  int lines = 0;
  while (start < header.size()) {
    const size_t end = header.find('\n', start);
    const std::string line = header.substr(start, end - start);
    EXPECT_EQ(line[0], '#');
    EXPECT_EQ(line.size() + 1, row.size()) << line;
    start = end + 1;
    ++lines;
  }
  EXPECT_EQ(lines, 3);
  EXPECT_NE(header.find("#wrong"), std::string::npos);
}

TEST(PerfOptions, NonReducingRowsSayNone) {
  Row row = sample_row();
  row.coll = Collective::kBroadcast;
  row.root = 1;
  const std::string line = format_row(row);
  EXPECT_NE(line.find("  none       1"), std::string::npos) << line;
}

TEST(PerfOptions, SendRecvRowHasNoInPlaceColumns) {
  const std::string line = format_row(send_recv_row());
  EXPECT_EQ(line,
            "     1048576        262144     float    none      -1    104.86    10.00    10.00  "
            "     0       N/A      N/A      N/A     N/A\n");
  // Still as wide as the header, so the columns line up.
  EXPECT_EQ(line.size(), table_header().find('\n') + 1);
  EXPECT_EQ(format_json_row(send_recv_row(), 2, GP_ALGO_AUTO),
            "{\"collective\":\"sendrecv\",\"nranks\":2,\"algorithm\":\"auto\",\"size\":1048576,"
            "\"count\":262144,\"rank_count\":262144,\"type\":\"float\",\"redop\":\"none\","
            "\"root\":-1,\"out_of_place\":{\"time_us\":104.858,\"algbw_gbps\":10,"
            "\"busbw_gbps\":10,\"wrong\":0},\"in_place\":null}\n");
}

TEST(PerfOptions, JsonRow) {
  EXPECT_EQ(format_json_row(sample_row(), 4, GP_ALGO_RING),
            "{\"collective\":\"all_reduce\",\"nranks\":4,\"algorithm\":\"ring\",\"size\":1048576,"
            "\"count\":262144,\"rank_count\":262144,\"type\":\"float\",\"redop\":\"sum\","
            "\"root\":-1,\"out_of_place\":{\"time_us\":104.858,\"algbw_gbps\":10,"
            "\"busbw_gbps\":15,\"wrong\":0},\"in_place\":{\"time_us\":209.715,\"algbw_gbps\":5,"
            "\"busbw_gbps\":7.5,\"wrong\":null}}\n");
}

Row compressed_row() {
  Row row = sample_row();
  row.compressed = true;
  row.in_place = Measurement();
  row.in_place.skipped = true;
  row.out_of_place.wire_bytes = 199168;
  row.out_of_place.wire_bytes_max = 199200;
  row.out_of_place.codec_used = "topk:0.01+q8:block=256:round=nearest:seed=0";
  row.out_of_place.algorithm_used = "direct";
  row.out_of_place.max_error = 0.00394;
  return row;
}

TEST(PerfOptions, CompressedRowLinesUpWithItsHeader) {
  const std::string header = compressed_table_header();
  const std::string row = format_row(compressed_row());
  EXPECT_EQ(row,
            "     1048576        262144     float     sum    104.86    10.00    15.00      199168  "
            "     0  3.94e-03  topk:0.01+q8\n");
  EXPECT_LE(row.size(), 121u);  // 120 columns and the newline
  size_t start = 0;
  int lines = 0;
  while (start < header.size()) {
    const size_t end = header.find('\n', start);
    const std::string line = header.substr(start, end - start);
    EXPECT_EQ(line[0], '#');
    EXPECT_EQ(line.size() + 1, row.size()) << line;
    start = end + 1;
    ++lines;
  }
  EXPECT_EQ(lines, 3);
  for (const char* column : {"busbw", "wire", "#wrong", "maxerr", "codec"}) {
    EXPECT_NE(header.find(column), std::string::npos) << column;
  }
  // Not measured, not checked, no codec reported.
  Row empty = compressed_row();
  empty.out_of_place.wire_bytes = -1;
  empty.out_of_place.max_error = -1;
  empty.out_of_place.wrong = -1;
  empty.out_of_place.codec_used = "none";
  EXPECT_EQ(format_row(empty),
            "     1048576        262144     float     sum    104.86    10.00    15.00         N/A  "
            "   N/A       N/A          none\n");
}

TEST(PerfOptions, ShortCodecName) {
  EXPECT_EQ(short_codec_name("q8:block=256:round=nearest:seed=0"), "q8");
  EXPECT_EQ(short_codec_name("q4:block=64:round=stochastic:seed=7"),
            "q4:block=64:round=stochastic:seed=7");
  EXPECT_EQ(short_codec_name("topk:0.01+q8:block=256:round=nearest:seed=0"), "topk:0.01+q8");
  EXPECT_EQ(short_codec_name("topk:0.01"), "topk:0.01");
  EXPECT_EQ(short_codec_name("none"), "none");
  EXPECT_EQ(short_codec_name("bf16"), "bf16");
}

TEST(PerfOptions, CompressedJsonRow) {
  EXPECT_EQ(format_json_row(compressed_row(), 4, GP_ALGO_AUTO, "auto:topk:0.01+q8", false),
            "{\"collective\":\"all_reduce\",\"nranks\":4,\"algorithm\":\"auto\",\"size\":1048576,"
            "\"count\":262144,\"rank_count\":262144,\"type\":\"float\",\"redop\":\"sum\","
            "\"root\":-1,\"codec\":\"auto:topk:0.01+q8\",\"error_feedback\":false,"
            "\"out_of_place\":{\"time_us\":104.858,\"algbw_gbps\":10,\"busbw_gbps\":15,"
            "\"wrong\":0,\"wire_bytes\":199168,\"wire_bytes_max\":199200,"
            "\"codec_used\":\"topk:0.01+q8:block=256:round=nearest:seed=0\","
            "\"algorithm_used\":\"direct\",\"maxerr\":0.00394},\"in_place\":null}\n");
}

TEST(PerfOptions, CompressedJsonKeepsEveryByte) {
  Row row = compressed_row();
  row.out_of_place.wire_bytes = 25564500;
  row.out_of_place.wire_bytes_max = 25564501.5;
  const std::string json = format_json_row(row, 4, GP_ALGO_AUTO, "q8", true);
  EXPECT_NE(json.find("\"wire_bytes\":25564500,\"wire_bytes_max\":25564501.5"), std::string::npos)
      << json;
  row.out_of_place.wire_bytes = -1;
  row.out_of_place.max_error = -1;
  const std::string unmeasured = format_json_row(row, 4, GP_ALGO_AUTO, "q8", true);
  EXPECT_NE(unmeasured.find("\"wire_bytes\":null"), std::string::npos) << unmeasured;
  EXPECT_NE(unmeasured.find("\"maxerr\":null"), std::string::npos) << unmeasured;
}

TEST(PerfOptions, GroupFlag) {
  PerfOptions o;
  ASSERT_EQ(parse({"--group", "100", "-b", "1K", "-e", "1K"}, &o), std::nullopt);
  EXPECT_EQ(o.group, 100);
  ASSERT_EQ(parse({"--group=8"}, &o), std::nullopt);
  EXPECT_EQ(o.group, 8);
  PerfOptions bad;
  EXPECT_EQ(parse({"--group", "0"}, &bad),
            "--group: expected a number of calls in [1, 65536], got '0'");
  EXPECT_EQ(parse({"--group", "x"}, &bad),
            "--group: expected a number of calls in [1, 65536], got 'x'");
  PerfOptions z;
  EXPECT_NE(parse({"--group", "4", "-z", "q8"}, &z), std::nullopt);
  PerfOptions c;
  const auto err = parse({"--group", "4", "-C", "broadcast"}, &c);
  ASSERT_NE(err, std::nullopt);
  EXPECT_NE(err->find("all_reduce only"), std::string::npos) << *err;
  PerfOptions g;
  EXPECT_EQ(parse({"-G", "4"}, &g), "unknown argument '-G' (see --help)");
  EXPECT_NE(std::string(kPerfHelp).find("--group N"), std::string::npos);
}

Row group_row() {
  Row row = sample_row();
  row.group = 100;
  row.out_of_place = measure(Collective::kAllReduce, 4, row.shape.bytes * 100, 1000e-6, 0);
  row.in_place = Measurement();
  row.in_place.skipped = true;
  row.separate_us = 7500;
  return row;
}

TEST(PerfOptions, GroupRowLinesUpWithItsHeader) {
  const std::string header = group_table_header();
  const std::string row = format_group_row(group_row());
  EXPECT_DOUBLE_EQ(group_speedup(group_row()), 7.5);
  EXPECT_EQ(row,
            "     1048576        262144     float     sum     100   1000.00   104.86   157.29  "
            "     0   7500.00     7.50\n");
  size_t start = 0;
  int lines = 0;
  while (start < header.size()) {
    const size_t end = header.find('\n', start);
    const std::string line = header.substr(start, end - start);
    EXPECT_EQ(line[0], '#');
    EXPECT_EQ(line.size() + 1, row.size()) << line;
    start = end + 1;
    ++lines;
  }
  EXPECT_EQ(lines, 3);
  EXPECT_NE(header.find("speedup"), std::string::npos);
  Row unmeasured = group_row();
  unmeasured.separate_us = -1;
  EXPECT_EQ(group_speedup(unmeasured), 0);
}

TEST(PerfOptions, GroupJsonRow) {
  const std::string json = format_json_row(group_row(), 4, GP_ALGO_AUTO);
  EXPECT_NE(json.find("\"group\":100,\"separate_time_us\":7500,\"group_speedup\":7.5,"
                      "\"out_of_place\":{\"time_us\":1000,"),
            std::string::npos)
      << json;
  EXPECT_NE(json.find("\"in_place\":null"), std::string::npos) << json;
}

TEST(PerfOptions, Names) {
  EXPECT_STREQ(dtype_name(GP_FLOAT16), "half");
  EXPECT_STREQ(dtype_name(GP_BFLOAT16), "bfloat16");
  EXPECT_EQ(dtype_bytes(GP_INT64), 8u);
  EXPECT_STREQ(redop_name(GP_AVG), "avg");
  EXPECT_STREQ(algo_name(GP_ALGO_HD), "hd");
  EXPECT_STREQ(collective_name(Collective::kAllGather), "all_gather");
  EXPECT_TRUE(collective_reduces(Collective::kReduceScatter));
  EXPECT_FALSE(collective_reduces(Collective::kAllGather));
  EXPECT_TRUE(collective_has_root(Collective::kBroadcast));
}

}  // namespace
}  // namespace gradpack::tools
