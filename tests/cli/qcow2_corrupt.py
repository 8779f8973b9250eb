# SPDX-License-Identifier: MIT
"""Damage qcow2 images on purpose (for the check/repair tests).

A small, independent reader of the qcow2 layout (qcow2.txt): the header, the
L1/L2 tables, the refcount table and blocks, with setters for every field a
test wants to break. Offsets are host byte offsets, clusters are host cluster
indices, guest offsets are virtual disk offsets.
"""
import struct

OFLAG_COPIED = 1 << 63
OFLAG_COMPRESSED = 1 << 62
OFLAG_ZERO = 1
OFFSET_MASK = 0x00fffffffffffe00
INCOMPAT_DIRTY = 1 << 0
INCOMPAT_CORRUPT = 1 << 1


class Qcow2:
    def __init__(self, path):
        self.path = str(path)
        with open(self.path, "rb") as f:
            h = f.read(112)
        (magic, self.version, _bfo, _bfs, self.cluster_bits, self.size, _crypt,
         self.l1_size, self.l1_offset, self.rt_offset, self.rt_clusters,
         self.nb_snapshots, self.snapshots_offset) = struct.unpack(">IIQIIQIIQQIIQ", h[:72])
        assert magic == 0x514649FB
        if self.version >= 3:
            (self.incompat, self.compat, self.autoclear, self.refcount_order,
             _hlen) = struct.unpack(">QQQII", h[72:104])
        else:
            self.incompat = self.compat = self.autoclear = 0
            self.refcount_order = 4
        self.cluster_size = 1 << self.cluster_bits
        self.extended_l2 = bool(self.incompat & (1 << 4))
        self.l2_entry_size = 16 if self.extended_l2 else 8
        self.l2_entries = self.cluster_size // self.l2_entry_size
        self.refcount_bits = 1 << self.refcount_order
        self.rb_entries = self.cluster_size * 8 // self.refcount_bits

    # raw access
    def read(self, off, n):
        with open(self.path, "rb") as f:
            f.seek(off)
            return f.read(n).ljust(n, b"\0")

    def write(self, off, data):
        with open(self.path, "r+b") as f:
            f.seek(off)
            f.write(data)

    def u64(self, off):
        return struct.unpack(">Q", self.read(off, 8))[0]

    def put64(self, off, v):
        self.write(off, struct.pack(">Q", v))

    def file_size(self):
        with open(self.path, "rb") as f:
            f.seek(0, 2)
            return f.tell()

    def truncate(self, size):
        with open(self.path, "r+b") as f:
            f.truncate(size)

    # header
    def set_incompat(self, bits):
        self.incompat = bits
        self.put64(72, bits)

    def set_header_rt(self, offset, clusters):
        self.write(48, struct.pack(">QI", offset, clusters))
        self.rt_offset, self.rt_clusters = offset, clusters

    # refcount table and blocks
    def rt_entry(self, i):
        return self.u64(self.rt_offset + 8 * i)

    def set_rt_entry(self, i, v):
        self.put64(self.rt_offset + 8 * i, v)

    def _refcount_pos(self, cluster):
        block = self.rt_entry(cluster // self.rb_entries) & ~0x1FF
        assert block, "no refcount block for cluster %d" % cluster
        return block, cluster % self.rb_entries

    def refcount(self, cluster):
        block, idx = self._refcount_pos(cluster)
        bits = self.refcount_bits
        if bits < 8:
            b = self.read(block + idx * bits // 8, 1)[0]
            return (b >> (idx * bits % 8)) & ((1 << bits) - 1)
        n = bits // 8
        return int.from_bytes(self.read(block + idx * n, n), "big")

    def set_refcount(self, cluster, v):
        block, idx = self._refcount_pos(cluster)
        bits = self.refcount_bits
        if bits < 8:
            pos = block + idx * bits // 8
            shift = idx * bits % 8
            mask = ((1 << bits) - 1) << shift
            b = self.read(pos, 1)[0]
            self.write(pos, bytes([(b & ~mask) | ((v << shift) & mask)]))
            return
        n = bits // 8
        self.write(block + idx * n, v.to_bytes(n, "big"))

    # L1 / L2
    def l1_entry(self, i):
        return self.u64(self.l1_offset + 8 * i)

    def set_l1_entry(self, i, v):
        self.put64(self.l1_offset + 8 * i, v)

    def _l2_pos(self, guest_off):
        c = guest_off >> self.cluster_bits
        l1 = self.l1_entry(c // self.l2_entries) & OFFSET_MASK
        assert l1, "guest offset %d has no L2 table" % guest_off
        return l1 + (c % self.l2_entries) * self.l2_entry_size

    def l2_entry(self, guest_off):
        return self.u64(self._l2_pos(guest_off))

    def set_l2_entry(self, guest_off, v):
        self.put64(self._l2_pos(guest_off), v)

    def l2_bitmap(self, guest_off):
        return self.u64(self._l2_pos(guest_off) + 8)

    def set_l2_bitmap(self, guest_off, v):
        self.put64(self._l2_pos(guest_off) + 8, v)

    def host_cluster(self, guest_off):
        """Host cluster index of a (standard) guest cluster."""
        return (self.l2_entry(guest_off) & OFFSET_MASK) >> self.cluster_bits

    def l2_cluster(self, guest_off):
        c = guest_off >> self.cluster_bits
        return (self.l1_entry(c // self.l2_entries) & OFFSET_MASK) >> self.cluster_bits
