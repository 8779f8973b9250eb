// SPDX-License-Identifier: MIT
//
// extents.cpp: examples/extents.c in C++, to show that the headers work there
// (extern "C"). Prints the same lines.
//
//   c++ extents.cpp $(pkg-config --cflags --libs qimg) -o extents-cpp
#include <cinttypes>
#include <cstdio>
#include <memory>

#include <qimg/qimg.h>

namespace {

struct node_unref {
    void operator()(qimg_node *n) const { qimg_node_unref(n); }
};
using node_ptr = std::unique_ptr<qimg_node, node_unref>;

} // namespace

int main(int argc, char **argv)
{
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s IMAGE\n", argv[0]);
        return 2;
    }
    qimg_error err{};
    qimg_node *raw = nullptr;
    if (qimg_open(&raw, argv[1], nullptr, nullptr, QIMG_O_FORCE_SHARE, &err) < 0) {
        std::fprintf(stderr, "extents: Could not open '%s': %s\n", argv[1], err.msg);
        return 1;
    }
    node_ptr img(raw);
    const int64_t len = qimg_node_length(img.get());
    std::printf("%s: %s, %" PRId64 " bytes (libqimg %s)\n", argv[1],
                qimg_node_format(img.get()), len, qimg_version());
    for (uint64_t off = 0; len > 0 && off < static_cast<uint64_t>(len);) {
        qimg_block_status st{};
        int ret = qimg_chain_block_status(img.get(), nullptr, off,
                                          static_cast<uint64_t>(len) - off, &st);
        if (ret < 0) {
            std::fprintf(stderr, "extents: block status at %" PRIu64 " failed: %d\n", off, ret);
            return 1;
        }
        if (st.flags & (QIMG_BLK_DATA | QIMG_BLK_ZERO))
            std::printf("%" PRIu64 " %" PRIu64 " %s\n", off, st.bytes,
                        (st.flags & QIMG_BLK_ZERO) ? "zero" : "data");
        off += st.bytes;
    }
    return 0;
}
