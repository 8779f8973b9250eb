#!/bin/sh
# Run the whole suite against build dir $1: C unit tests, then the pytest
# integration and differential tests. Ends with "N passed, N failed, N skipped".
set -u
BUILD=${1:-build}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "$ROOT" && cd "$BUILD" && pwd)
RESULTS=$(mktemp -d)
trap 'rm -rf "$RESULTS"' EXIT

unit_pass=0; unit_fail=0
for t in "$BUILD"/tests/unit/test-*; do
    [ -f "$t" ] && [ -x "$t" ] || continue
    out="$RESULTS/$(basename "$t").out"
    "$t" >"$out" 2>&1
    rc=$?
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$out" | tail -1)
    p=$(echo "$line" | sed -E 's/^([0-9]+) passed.*/\1/')
    f=$(echo "$line" | sed -E 's/.* ([0-9]+) failed.*/\1/')
    [ -n "$line" ] || { p=0; f=1; }
    [ $rc -ne 0 ] && [ "$f" = 0 ] && f=1
    unit_pass=$((unit_pass + p)); unit_fail=$((unit_fail + f))
    if [ "$f" != 0 ]; then cat "$out"; fi
    echo "unit $(basename "$t"): $p passed, $f failed"
done

export QIMG_BUILD="$BUILD"
cd "$ROOT"
# One pytest worker per core (QIMG_TEST_JOBS overrides; 1 runs in this process). Tests
# that share a server started once per worker (a Ceph cluster, an iSCSI target) carry
# pytest.mark.xdist_group so one worker runs them all.
jobs=${QIMG_TEST_JOBS:-$(nproc)}
parallel=""
if [ "$jobs" -gt 1 ] && /usr/bin/python3 -c 'import xdist' 2>/dev/null; then
    parallel="-n $jobs --dist loadgroup"
fi
/usr/bin/python3 -m pytest -q -p no:cacheprovider --junitxml="$RESULTS/junit.xml" \
    $parallel ${PYTEST_ARGS:-} tests/cli
/usr/bin/python3 - "$RESULTS/junit.xml" "$unit_pass" "$unit_fail" <<'PY'
import sys, xml.etree.ElementTree as ET
up, uf = int(sys.argv[2]), int(sys.argv[3])
tests = failures = errors = skipped = 0
try:
    root = ET.parse(sys.argv[1]).getroot()
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    for s in suites:
        tests += int(s.get("tests", 0)); failures += int(s.get("failures", 0))
        errors += int(s.get("errors", 0)); skipped += int(s.get("skipped", 0))
except Exception as e:
    print("could not read pytest results:", e); errors += 1
passed = up + tests - failures - errors - skipped
failed = uf + failures + errors
print(f"{passed} passed, {failed} failed, {skipped} skipped")
sys.exit(1 if failed else 0)
PY
