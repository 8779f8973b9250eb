#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Print the soname of the shared library the compiler would link for -lNAME.

Usage: soname.py NAME [LIBDIR] -- CC [CC-ARGS...]

Asks the compiler where libNAME.so is (`CC -print-file-name=libNAME.so`, then LIBDIR if
given), follows symlinks and reads DT_SONAME from the ELF file's dynamic section. Exits 1
with nothing on stdout when that cannot be determined (no such library, a linker script, no
soname): meson then links the library directly instead of loading it on demand
(src/protocols/lazylib.h).
"""
import os
import struct
import subprocess
import sys

DT_NULL, DT_STRTAB, DT_SONAME = 0, 5, 14
SHT_DYNAMIC = 6
PT_LOAD, PT_DYNAMIC = 1, 2


def elf_soname(path):
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"\x7fELF":
        return None
    is64 = data[4] == 2
    end = "<" if data[5] == 1 else ">"
    if is64:
        phoff, = struct.unpack_from(end + "Q", data, 0x20)
        phentsize, phnum = struct.unpack_from(end + "HH", data, 0x36)
        phdr_fmt, dyn_fmt = end + "IIQQQQQQ", end + "qQ"
    else:
        phoff, = struct.unpack_from(end + "I", data, 0x1C)
        phentsize, phnum = struct.unpack_from(end + "HH", data, 0x2A)
        phdr_fmt, dyn_fmt = end + "IIIIIIII", end + "iI"
    loads, dynamic = [], None
    for i in range(phnum):
        fields = struct.unpack_from(phdr_fmt, data, phoff + i * phentsize)
        if is64:
            p_type, _flags, p_offset, p_vaddr, _paddr, p_filesz = fields[:6]
        else:
            p_type, p_offset, p_vaddr, _paddr, p_filesz = fields[:5]
        if p_type == PT_LOAD:
            loads.append((p_vaddr, p_offset, p_filesz))
        elif p_type == PT_DYNAMIC:
            dynamic = (p_offset, p_filesz)
    if dynamic is None:
        return None
    strtab_addr = soname_off = None
    size = struct.calcsize(dyn_fmt)
    for pos in range(dynamic[0], dynamic[0] + dynamic[1], size):
        tag, val = struct.unpack_from(dyn_fmt, data, pos)
        if tag == DT_NULL:
            break
        if tag == DT_STRTAB:
            strtab_addr = val
        elif tag == DT_SONAME:
            soname_off = val
    if strtab_addr is None or soname_off is None:
        return None
    # DT_STRTAB is an address: map it to a file offset through the loadable segments.
    for vaddr, offset, filesz in loads:
        if vaddr <= strtab_addr < vaddr + filesz:
            start = strtab_addr - vaddr + offset + soname_off
            return data[start:data.index(b"\0", start)].decode()
    return None


def main(argv):
    if "--" not in argv or argv.index("--") not in (2, 3):
        sys.exit(__doc__)
    sep = argv.index("--")
    name, libdir, cc = argv[1], (argv[2] if sep == 3 else ""), argv[sep + 1:]
    filename = "lib%s.so" % name
    out = subprocess.run(cc + ["-print-file-name=" + filename], capture_output=True,
                         text=True).stdout.strip()
    candidates = [out] if os.path.isabs(out) else []
    if libdir:
        candidates.append(os.path.join(libdir, filename))
    for path in candidates:
        if os.path.exists(path):
            try:
                soname = elf_soname(os.path.realpath(path))
            except (OSError, struct.error, ValueError, UnicodeDecodeError):
                soname = None
            if soname:
                print(soname)
                return 0
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
