# SPDX-License-Identifier: MIT
"""Installing qimg as a package (issue 21): `meson install` into a temporary
DESTDIR from the build under test, then use only the installed files: the
binaries, libqimg.so/.a through pkg-config (the C and C++ examples), the
headers on their own, the man pages through `man -l`, bash completion, and the
optional qemu-img/qemu-io links."""
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import BUILD, ROOT, run

# Every header of include/qimg is public but the driver interface; version.h is generated.
PUBLIC_HEADERS = sorted({p.name for p in (ROOT / "include" / "qimg").glob("*.h")} - {"driver.h"}
                        | {"version.h"})
CACHE_MODES = "none writeback writethrough directsync unsafe".split()


def build_options(build):
    opts = json.loads((build / "meson-info" / "intro-buildoptions.json").read_text())
    return {o["name"]: o["value"] for o in opts}


def project_version():
    return json.loads((BUILD / "meson-info" / "intro-projectinfo.json").read_text())["version"]


def sh(argv, **kw):
    """Run, and fail the test with the output when it fails."""
    r = run(argv, **kw)
    assert r.rc == 0, f"{argv}: {r}"
    return r


class Install:
    """Where the files of an install under destdir are."""

    def __init__(self, destdir, opts):
        self.destdir = destdir
        self.opts = opts
        self.prefix = opts["prefix"]

    def path(self, option, *rest):
        d = Path(self.opts[option])
        if not d.is_absolute():
            d = Path(self.prefix) / d
        return Path(str(self.destdir) + str(d)).joinpath(*rest)

    @property
    def env(self):
        """pkg-config finds qimg.pc in DESTDIR; programs find the .so there."""
        env = dict(os.environ)
        env["PKG_CONFIG_PATH"] = str(self.path("libdir", "pkgconfig"))
        env["LD_LIBRARY_PATH"] = str(self.path("libdir"))
        env["PATH"] = str(self.path("bindir")) + os.pathsep + env["PATH"]
        return env

    def pkg_config(self, *args):
        # qimg.pc's paths hang off ${prefix}: point it into DESTDIR (as a packager's
        # relocated install would). PKG_CONFIG_SYSROOT_DIR would also move the system
        # paths of zlib & co. into DESTDIR.
        prefix = f"{self.destdir}{self.prefix}"
        return sh(["pkg-config", f"--define-variable=prefix={prefix}", *args, "qimg"],
                  env=self.env).out.split()


@pytest.fixture(scope="module")
def inst(tmp_path_factory):
    destdir = tmp_path_factory.mktemp("destdir")
    # --no-rebuild: the suite tests the build as it is; nothing else writes to it meanwhile.
    sh(["meson", "install", "-C", BUILD, "--no-rebuild", "--quiet", "--destdir", destdir])
    return Install(destdir, build_options(BUILD))


def sanitize_flags(inst):
    """Programs linked against a sanitized libqimg (make asan) need the same runtimes."""
    s = inst.opts.get("b_sanitize", "none")
    return [] if s == "none" else [f"-fsanitize={s}"]


def test_installed_files(inst):
    assert os.access(inst.path("bindir", "qimg"), os.X_OK)
    assert os.access(inst.path("bindir", "qimg-io"), os.X_OK)
    assert sorted(p.name for p in inst.path("includedir", "qimg").iterdir()) == sorted(PUBLIC_HEADERS)
    lib = inst.path("libdir")
    assert (lib / "libqimg.a").is_file()
    assert os.readlink(lib / "libqimg.so") == "libqimg.so.0"
    assert re.fullmatch(r"libqimg\.so\.0\.\d+\.\d+", os.readlink(lib / "libqimg.so.0"))
    for f in ["LICENSE", "NEWS.md", "README.md", "versioning.md", "examples/extents.c",
              "examples/extents.cpp"]:
        assert inst.path("datadir", "doc", "qimg", f).is_file()


def test_installed_binaries_run_on_their_own(inst, tmp_path):
    qimg, qimg_io = inst.path("bindir", "qimg"), inst.path("bindir", "qimg-io")
    for exe in (qimg, qimg_io):
        dyn = sh(["readelf", "-d", exe]).out
        assert "RPATH" not in dyn and "RUNPATH" not in dyn and str(BUILD) not in dyn
    r = sh([qimg, "--version"], env=inst.env)
    assert re.match(r"qimg version 9\.1\.0 \(qimg \d+\.\d+\.\d+\)\n", r.out)
    sh([qimg, "create", "-q", "-f", "qcow2", "d.qcow2", "1M"], cwd=tmp_path)
    sh([qimg_io, "-c", "write -P 7 64k 4k", "d.qcow2"], cwd=tmp_path)
    info = json.loads(sh([qimg, "info", "--output=json", "d.qcow2"], cwd=tmp_path).out)
    assert (info["format"], info["virtual-size"]) == ("qcow2", 1 << 20)
    assert "read 4096/4096" in sh([qimg_io, "-c", "read -P 7 64k 4k", "d.qcow2"], cwd=tmp_path).out


def test_soname_and_version_node(inst):
    so = inst.path("libdir", "libqimg.so.0")
    assert "Library soname: [libqimg.so.0]" in sh(["readelf", "-d", so]).out
    syms = sh(["readelf", "--dyn-syms", "-W", so]).out
    assert re.search(r"\bqimg_open@@QIMG_0\b", syms)


def exported(inst):
    out = sh(["nm", "-D", "--defined-only", inst.path("libdir", "libqimg.so.0")]).out
    return {line.split()[-1].split("@")[0] for line in out.splitlines() if line.split()[1] != "A"}


def declared_by_compiler(inst, tmp_path):
    """The functions the installed headers declare, as gcc sees them (-aux-info),
    independently of the generator of the version script."""
    src = tmp_path / "all.c"
    src.write_text("#include <qimg/qimg.h>\n")
    aux = tmp_path / "aux.txt"
    inc = inst.path("includedir")
    sh(["gcc", "-std=c11", "-fsyntax-only", f"-I{inc}", f"-aux-info={aux}", src])
    names = set()
    for line in aux.read_text().splitlines():
        m = re.match(r"/\* (\S+):\d+:[A-Z]+ \*/ (.*)", line)
        if m and m.group(1).startswith(str(inc)) and not re.search(r"\bstatic\b", m.group(2)):
            names.add(re.search(r"(\w+) \(", m.group(2)).group(1))
    return names


def test_library_exports_exactly_the_public_api(inst, tmp_path):
    syms = exported(inst)
    declared = declared_by_compiler(inst, tmp_path)
    assert len(declared) > 100 and "qimg_open" in declared and "qimg_version" in declared
    assert syms == declared
    # Internals stay hidden: the qcow2 driver, the driver registry, the allocators.
    assert not [s for s in syms if not s.startswith("qimg_")]
    for internal in ["qcow2_alloc_clusters", "qimg_driver_register", "qimg_qcow2_driver",
                     "xmalloc", "qimg_copy_run"]:
        assert internal not in syms
    static = sh(["nm", "-g", "--defined-only", inst.path("libdir", "libqimg.a")]).out
    assert " qcow2_alloc_clusters" in static  # what the version script hides is there


def test_driver_header_not_installed(inst):
    """The driver vtable is internal: no installed header includes it."""
    assert not inst.path("includedir", "qimg", "driver.h").exists()
    for h in inst.path("includedir", "qimg").iterdir():
        assert not re.search(r"#include\s+[<\"]qimg/driver\.h", h.read_text())


@pytest.mark.parametrize("compiler", [["gcc", "-std=c11", "-x", "c"],
                                      ["g++", "-std=c++11", "-x", "c++"]])
@pytest.mark.parametrize("header", PUBLIC_HEADERS)
def test_each_header_compiles_alone(inst, tmp_path, compiler, header):
    src = tmp_path / "one"
    src.write_text(f"#include <qimg/{header}>\nint main(void) {{ return 0; }}\n")
    sh([*compiler, "-Wall", "-Wextra", "-Werror", "-pedantic", "-fsyntax-only",
        f"-I{inst.path('includedir')}", src])


def map_extents(oracle, image):
    """(offset, length, kind) of the allocated runs as qemu-img map reports them."""
    runs = []
    for e in json.loads(oracle.img("map", "--output=json", image).out):
        if not e["present"]:
            continue
        kind = "data" if e["data"] else "zero"
        if runs and runs[-1][2] == kind and runs[-1][0] + runs[-1][1] == e["start"]:
            runs[-1] = (runs[-1][0], runs[-1][1] + e["length"], kind)
        else:
            runs.append((e["start"], e["length"], kind))
    return runs


def example_extents(out):
    runs = []
    for line in out.splitlines()[1:]:
        off, length, kind = line.split()
        off, length = int(off), int(length)
        if runs and runs[-1][2] == kind and runs[-1][0] + runs[-1][1] == off:
            runs[-1] = (runs[-1][0], runs[-1][1] + length, kind)
        else:
            runs.append((off, length, kind))
    return runs


@pytest.fixture
def sample_image(oracle, tmp_path):
    """A qcow2 image QEMU wrote: data, a zeroed range, more data, holes between."""
    assert oracle.img("create", "-q", "-f", "qcow2", "s.qcow2", "4M").rc == 0
    r = oracle.io("-f", "qcow2", "-c", "write -P 1 0 64k", "-c", "write -z 1M 128k",
                  "-c", "write -P 2 3M 192k", "s.qcow2")
    assert r.rc == 0, r
    return tmp_path / "s.qcow2"


def build_example(inst, tmp_path, compiler, source, *extra, static=False):
    exe = tmp_path / (source + ("-static" if static else ""))
    src = inst.path("datadir", "doc", "qimg", "examples", source)
    if static:
        # libqimg.a and the libraries it needs (Requires.private, Libs.private), those
        # linked as shared libraries: `pkg-config --static` would also ask for the static
        # closure of libcurl, which Debian does not ship (-lnghttp2, -lrtmp ...).
        prefix = f"{inst.destdir}{inst.prefix}"
        listed = sh(["pkg-config", f"--define-variable=prefix={prefix}",
                     "--print-requires-private", "qimg"], env=inst.env).out
        requires = [line.split()[0] for line in listed.splitlines() if line.strip()]
        deps = sh(["pkg-config", "--libs", *requires], env=inst.env).out.split() if requires else []
        # Libs.private as qimg.pc lists it (libraries without a .pc file: -lbz2, -lm ...).
        pc = inst.path("libdir", "pkgconfig", "qimg.pc").read_text()
        private = next((line.split(":", 1)[1].split() for line in pc.splitlines()
                        if line.startswith("Libs.private:")), [])
        libs = ["-Wl,-Bstatic", "-lqimg", "-Wl,-Bdynamic"] + deps + private
        flags = inst.pkg_config("--cflags") + [f"-L{inst.path('libdir')}"] + libs
    else:
        flags = inst.pkg_config("--cflags", "--libs")
    sh([*compiler, "-Wall", "-Wextra", "-Werror", *extra, *sanitize_flags(inst), "-o", exe, src,
        *flags], env=inst.env)
    return exe


@pytest.mark.parametrize("compiler,source,extra", [
    (["gcc"], "extents.c", ["-std=c11", "-pedantic"]),
    (["g++"], "extents.cpp", ["-std=c++11", "-pedantic"]),
])
def test_example_against_installed_library(inst, oracle, tmp_path, sample_image, compiler,
                                           source, extra):
    cflags = inst.pkg_config("--cflags")
    # ours first; a Requires.private library may add its own (libcurl-gnutls: its arch dir)
    assert cflags[0] == f"-I{inst.path('includedir')}"
    assert all(f.startswith("-I/usr/include") for f in cflags[1:]), cflags
    exe = build_example(inst, tmp_path, compiler, source, *extra)
    # It runs against the installed libqimg.so.0, not the build's.
    ldd = sh(["ldd", exe], env=inst.env).out
    assert f"libqimg.so.0 => {inst.path('libdir', 'libqimg.so.0')}" in ldd
    r = sh([exe, sample_image], env=inst.env)
    assert r.out.splitlines()[0] == f"{sample_image}: qcow2, 4194304 bytes (libqimg {project_version()})"
    assert example_extents(r.out) == map_extents(oracle, "s.qcow2") == [
        (0, 64 << 10, "data"), (1 << 20, 128 << 10, "zero"), (3 << 20, 192 << 10, "data")]
    # Errors come back as messages, without an init call having been made.
    r = run([exe, tmp_path / "missing.qcow2"], env=inst.env)
    assert (r.rc, r.err) == (1, f"extents: Could not open '{tmp_path}/missing.qcow2': "
                                "Could not open '" + f"{tmp_path}/missing.qcow2"
                                "': No such file or directory\n")


def test_example_links_statically(inst, oracle, tmp_path, sample_image):
    exe = build_example(inst, tmp_path, ["gcc"], "extents.c", static=True)
    assert "libqimg" not in sh(["ldd", exe]).out
    r = sh([exe, sample_image])
    assert example_extents(r.out) == map_extents(oracle, "s.qcow2")


@pytest.mark.parametrize("page,name", [("qimg.1", "qimg"), ("qimg-io.1", "qimg-io")])
def test_man_pages_render(inst, page, name):
    path = inst.path("mandir", "man1", page)
    env = dict(os.environ, MANWIDTH="80", MAN_KEEP_FORMATTING="0", LC_ALL="C.UTF-8")
    r = run(["man", "--warnings", "-l", path], env=env)
    assert (r.rc, r.err) == (0, "")
    text = re.sub(r".\x08", "", r.out)
    assert text.startswith(f"{name}(1)")
    for section in ["NAME", "SYNOPSIS", "DESCRIPTION", "[A-Z ]*OPTIONS[A-Z ]*", "EXIT STATUS",
                    "BUGS", "SEE ALSO", "COPYRIGHT"]:
        assert re.search(rf"^{section}$", text, re.M), section
    assert f"{name} - " in text


def test_man_page_names_every_command(inst):
    """qimg(1) describes each command qimg --help lists."""
    helptext = sh([inst.path("bindir", "qimg"), "--help"]).out
    commands = re.findall(r"^  ([a-z]+) [\[(]", helptext, re.M)
    assert len(commands) == 16  # qemu-img's 15 and qimg's checksum (issue 22)
    env = dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8")
    text = re.sub(r".\x08", "", sh(["man", "-l", inst.path("mandir", "man1", "qimg.1")], env=env).out)
    described = re.findall(r"^       ([a-z]+)$", text, re.M)
    assert sorted(commands) == sorted(described)


COMPLETE = r'''
source "$1"; shift
fn=$1; shift
COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 ))
"$fn"
printf '%s\n' "${COMPREPLY[@]}"
'''


def complete(inst, fn, *words, prog=None, cwd=None):
    comp = inst.path("datadir", "bash-completion", "completions", prog or "qimg")
    r = sh(["bash", "--norc", "--noprofile", "-c", COMPLETE, "complete", comp, fn, *words],
           env=inst.env, cwd=cwd)
    return [w for w in r.out.splitlines() if w]


def test_bash_completion(inst, tmp_path):
    comp_dir = inst.path("datadir", "bash-completion", "completions")
    assert os.readlink(comp_dir / "qimg-io") == "qimg"
    # Commands, standard options.
    assert complete(inst, "_qimg", "qimg", "co") == ["commit", "compare", "convert"]
    assert len(complete(inst, "_qimg", "qimg", "")) == 16  # with checksum (qimg only)
    assert {"--image-opts", "--object", "--progress-fd=", "--progress=", "-T", "-U", "-a", "-f",
            "-p"} <= set(complete(inst, "_qimg", "qimg", "checksum", "-"))
    assert complete(inst, "_qimg", "qimg", "check", "--d") == ["--dry-run"]
    assert complete(inst, "_qimg", "qimg", "dd", "--pro") == ["--progress-fd=", "--progress="]
    assert complete(inst, "_qimg", "qimg", "--v") == ["--version"]
    # A command's options, as its syntax line has them.
    opts = complete(inst, "_qimg", "qimg", "convert", "-")
    assert {"-O", "-o", "-f", "-B", "-S", "--object", "--target-is-zero", "--salvage"} <= set(opts)
    assert complete(inst, "_qimg", "qimg", "info", "--ou") == ["--output="]
    assert complete(inst, "_qimg", "qimg", "info", "--output=j") == ["--output=json"]
    assert complete(inst, "_qimg", "qimg", "check", "-r", "") == ["leaks", "all"]
    assert complete(inst, "_qimg", "qimg", "convert", "-t", "") == CACHE_MODES
    # Formats.
    fmts = complete(inst, "_qimg", "qimg", "create", "-f", "")
    assert {"raw", "qcow2", "file"} <= set(fmts)
    assert complete(inst, "_qimg", "qimg", "convert", "-O", "qc") == ["qcow", "qcow2"]
    # -o keys of the format given, after commas too.
    keys = complete(inst, "_qimg", "qimg", "create", "-f", "qcow2", "-o", "")
    assert {"cluster_size=", "compat=", "lazy_refcounts=", "size="} <= set(keys)
    assert complete(inst, "_qimg", "qimg", "convert", "-O", "qcow2", "-o", "compat=v3,clu") == \
        ["compat=v3,cluster_size="]
    assert complete(inst, "_qimg", "qimg", "create", "-o", "") == ["size="]  # raw by default
    # dd operands, file names.
    assert complete(inst, "_qimg", "qimg", "dd", "o") == ["of="]
    (tmp_path / "disk.qcow2").write_bytes(b"")
    assert complete(inst, "_qimg", "qimg", "info", "di", cwd=tmp_path) == ["disk.qcow2"]
    assert complete(inst, "_qimg", "qimg", "dd", "if=di", cwd=tmp_path) == ["if=disk.qcow2"]
    # qimg-io: options, -c commands.
    assert complete(inst, "_qimg_io", "qimg-io", "--for", prog="qimg-io") == \
        ["--force-share", "--format"]
    assert complete(inst, "_qimg_io", "qimg-io", "-c", "wr", prog="qimg-io") == ["write", "writev"]
    assert "qcow2" in complete(inst, "_qimg_io", "qimg-io", "-f", "", prog="qimg-io")


def test_completion_is_registered(inst):
    comp = inst.path("datadir", "bash-completion", "completions", "qimg")
    r = sh(["bash", "--norc", "--noprofile", "-c", f'source "{comp}"; complete -p'])
    for name in ["qimg", "qemu-img"]:
        assert f"complete -F _qimg {name}" in r.out
    for name in ["qimg-io", "qemu-io"]:
        assert f"complete -F _qimg_io {name}" in r.out


@pytest.fixture(scope="module")
def compat_build(inst, tmp_path_factory):
    """A fresh configure (nothing built) of the tree with -Dcompat_links=true, same layout."""
    build = tmp_path_factory.mktemp("compat-build")
    sh(["meson", "setup", build, ROOT, "-Dcompat_links=true", f"-Dprefix={inst.prefix}",
        f"-Dlibdir={inst.opts['libdir']}"])
    return build


def test_compat_links(inst, compat_build, tmp_path):
    """-Dcompat_links=true adds qemu-img and qemu-io (install tag "compat"), which
    behave as the qemu tools: their name in messages and versions."""
    bindir = inst.path("bindir")
    if not build_options(BUILD)["compat_links"]:
        assert not (bindir / "qemu-img").exists()  # not without the option
    sh(["meson", "install", "-C", compat_build, "--no-rebuild", "--quiet", "--tags", "compat",
        "--destdir", inst.destdir])
    assert os.readlink(bindir / "qemu-img") == "qimg"
    assert os.readlink(bindir / "qemu-io") == "qimg-io"
    comp_dir = inst.path("datadir", "bash-completion", "completions")
    assert os.readlink(comp_dir / "qemu-img") == "qimg"
    r = sh([bindir / "qemu-img", "--version"])
    assert r.out.startswith("qemu-img version 9.1.0 (qimg ")
    r = run([bindir / "qemu-img", "info", tmp_path / "nope"])
    assert r.err.startswith("qemu-img: Could not open")
    assert sh([bindir / "qemu-io", "-V"]).out.startswith("qemu-io version 9.1.0 (qimg ")


def test_meson_test_knows_the_suite(compat_build):
    """meson test runs the unit tests and every pytest module (as configured now: a
    build dir configured before a module was added needs `meson setup --reconfigure`)."""
    tests = json.loads((compat_build / "meson-info" / "intro-tests.json").read_text())
    names = {t["name"] for t in tests}
    modules = {p.stem for p in (ROOT / "tests" / "cli").glob("test_*.py")}
    units = {p.stem for p in (ROOT / "tests" / "unit").glob("test-*.c")}
    assert modules <= names and units <= names


def test_make_install_honours_destdir(tmp_path):
    """make install PREFIX=... DESTDIR=... (PREFIX the build's own, so the build
    under test is not reconfigured)."""
    prefix = build_options(BUILD)["prefix"]
    stage = tmp_path / "stage"
    sh(["make", "-C", ROOT, "install", f"BUILD={BUILD}", f"PREFIX={prefix}", f"DESTDIR={stage}"])
    staged = Install(stage, build_options(BUILD))
    assert os.access(staged.path("bindir", "qimg"), os.X_OK)
    assert staged.path("includedir", "qimg", "qimg.h").is_file()
