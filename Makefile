# qimg: thin wrapper over meson/ninja. `make demo` and `make check` set up everything
# on a fresh Debian 12 machine (as root), then build and run.
BUILD ?= build
ASAN_BUILD ?= build-asan
PYTEST ?= /usr/bin/python3 -m pytest

.PHONY: all deps build demo check unit-test cli-test asan fuzz bench clean install torture

all: build

deps:
	@./scripts/setup-deps.sh

$(BUILD)/build.ninja:
	meson setup $(BUILD) >/dev/null

build: deps $(BUILD)/build.ninja
	ninja -C $(BUILD)

# Install under PREFIX (default /usr/local; the build dir is reconfigured when it differs,
# and meson install rebuilds what that changes),
# staged under DESTDIR when set: make install PREFIX=/usr DESTDIR=/tmp/stage
PREFIX ?= /usr/local
install: build
	@[ "$$(meson introspect --buildoptions $(BUILD) | /usr/bin/python3 -c 'import json,sys; print([o["value"] for o in json.load(sys.stdin) if o["name"] == "prefix"][0])')" = "$(abspath $(PREFIX))" ] || \
	  meson configure $(BUILD) -Dprefix=$(abspath $(PREFIX)) >/dev/null
	meson install -C $(BUILD) $(if $(DESTDIR),--destdir $(abspath $(DESTDIR)))

demo: build
	@./scripts/demo.sh $(BUILD)

# The whole suite; the last line is "N passed, N failed[, N skipped]".
check: build
	@./scripts/run-tests.sh $(BUILD)

# The suite under AddressSanitizer + UndefinedBehaviorSanitizer (gcc's runtimes). A leak,
# a memory error or undefined behaviour in qimg, qimg-io or a unit test fails its test.
ASAN_ENV = ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1 \
	   UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	   LSAN_OPTIONS=suppressions=$(abspath tests/lsan.supp):print_suppressions=0
asan: deps
	@QIMG_SETUP_EXTRA=asan ./scripts/setup-deps.sh
	@[ -f $(ASAN_BUILD)/build.ninja ] || meson setup $(ASAN_BUILD) -Db_sanitize=address,undefined -Db_lundef=false >/dev/null
	ninja -C $(ASAN_BUILD)
	@$(ASAN_ENV) ./scripts/run-tests.sh $(ASAN_BUILD)

# The long reliability runs (doc/reliability.md): every power-loss cut point with
# several seeds, every fault with both EIO and ENOSPC.
torture: build
	QIMG_TORTURE=1 QIMG_BUILD=$(abspath $(BUILD)) $(PYTEST) -q -p no:cacheprovider -s \
	  tests/cli/test_powerfail.py tests/cli/test_fault_loop.py

bench: build
	@./bench/run $(BUILD)

# libFuzzer harnesses (clang, ASan+UBSan) over open + info + block status + read + check,
# FUZZ_SECONDS per harness (default 60).
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 60
fuzz: deps
	@QIMG_SETUP_EXTRA=fuzz ./scripts/setup-deps.sh
	@[ -f $(FUZZ_BUILD)/build.ninja ] || CC=clang meson setup $(FUZZ_BUILD) -Dfuzzing=true \
	  -Db_sanitize=address,undefined -Db_lundef=false >/dev/null
	ninja -C $(FUZZ_BUILD)
	@./scripts/run-fuzz.sh $(FUZZ_BUILD) $(FUZZ_SECONDS)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
