#!/bin/sh
# Run every libFuzzer harness in build dir $1 for $2 seconds each (default 60),
# seeded with small images qemu-img makes here plus the stored regression
# inputs. A crashing input is left in $1/fuzz-artifacts/; copy it to
# tests/fuzz/regressions/ so the suite replays it from then on.
set -u
BUILD=$1
SECONDS_EACH=${2:-60}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SEEDS=$(mktemp -d)
trap 'rm -rf "$SEEDS"' EXIT
ART="$BUILD/fuzz-artifacts"
mkdir -p "$ART"

# Seeds: qcow2 images of several geometries with data, zero and compressed clusters.
i=0
for opts in "" "compat=0.10" "cluster_size=512" "cluster_size=4k,refcount_bits=1" \
            "extended_l2=on" "compression_type=zstd" "refcount_bits=64" "lazy_refcounts=on"; do
    f="$SEEDS/seed$i.qcow2"
    qemu-img create -q -f qcow2 ${opts:+-o $opts} "$f" 4M
    qemu-io -f qcow2 -c 'write -P 0x5a 0 64k' -c 'write -z 1M 64k' -c 'write -c -P 1 2M 64k' \
        "$f" >/dev/null 2>&1 || true
    i=$((i + 1))
done
# VDI: dynamic and static images with data (block map entries in and out of order).
for opts in "" "static=on"; do
    f="$SEEDS/seed-vdi$i.vdi"
    qemu-img create -q -f vdi ${opts:+-o $opts} "$f" 3M
    qemu-io -f vdi -c 'write -P 0x5a 2M 4k' -c 'write -P 1 0 4k' "$f" >/dev/null 2>&1 || true
    i=$((i + 1))
done
# VHD: an empty dynamic disk, one with a block, a small fixed disk (footer at the end).
qemu-img create -q -f vpc "$SEEDS/seed-vpc-empty.vhd" 3M
qemu-img create -q -f vpc "$SEEDS/seed-vpc-data.vhd" 3M
qemu-io -f vpc -c 'write -P 0x5a 2M 4k' "$SEEDS/seed-vpc-data.vhd" >/dev/null 2>&1 || true
qemu-img create -q -f vpc -o subformat=fixed,force_size=on "$SEEDS/seed-vpc-fixed.vhd" 8k
# VHDX: dynamic (one block written, cut after its data) and fixed, cut after the metadata
# values (3 MiB + 64 KiB + 40): headers, region tables, log entry, BAT and metadata.
for opts in "block_size=1M" "subformat=fixed,block_state_zero=off,block_size=1M"; do
    qemu-img create -q -f vhdx -o "$opts" "$SEEDS/vhdx.tmp" 3M
    qemu-io -f vhdx -c 'write -P 0x5a 0 4k' "$SEEDS/vhdx.tmp" >/dev/null 2>&1 || true
    head -c 3211304 "$SEEDS/vhdx.tmp" > "$SEEDS/seed-vhdx$i.vhdx"
    i=$((i + 1))
done
rm -f "$SEEDS/vhdx.tmp"
# parallels (1 MiB and 64 KiB clusters) and qcow (v1; compressed clusters too).
for opts in "" "cluster_size=64k"; do
    f="$SEEDS/seed-prl$i.parallels"
    qemu-img create -q -f parallels ${opts:+-o $opts} "$f" 3M
    qemu-io -f parallels -c 'write -P 0x5a 2M 4k' -c 'write -P 1 0 4k' "$f" >/dev/null 2>&1 || true
    i=$((i + 1))
done
qemu-img create -q -f qcow "$SEEDS/seed-qcow.qcow" 3M
qemu-io -f qcow -c 'write -P 0x5a 2M 4k' -c 'write -P 1 0 4k' "$SEEDS/seed-qcow.qcow" >/dev/null 2>&1 || true
head -c 200000 /dev/urandom > "$SEEDS/qcow-src.raw"
qemu-img convert -c -O qcow "$SEEDS/qcow-src.raw" "$SEEDS/seed-qcowz.qcow" >/dev/null 2>&1 || true
rm -f "$SEEDS/qcow-src.raw"
# VMDK: sparse (versions 1-3, zeroed grains, stream-optimized) with data, and descriptor text.
for opts in "" "zeroed_grain=on" "subformat=streamOptimized"; do
    f="$SEEDS/seed-vmdk$i.vmdk"
    qemu-img create -q -f vmdk ${opts:+-o $opts} "$f" 2M
    qemu-io -f vmdk -c 'write -P 0x5a 0 64k' -c 'write -z 1M 64k' "$f" >/dev/null 2>&1 || true
    i=$((i + 1))
done
qemu-img create -q -f vmdk -o subformat=monolithicFlat "$SEEDS/flat.tmp" 1M &&
    cp "$SEEDS/flat.tmp" "$SEEDS/seed-vmdk-desc.txt"
rm -f "$SEEDS"/flat*.tmp "$SEEDS"/flat-flat.tmp
# QED: small clusters, data, zero clusters, a backing name (raw flag) and the need-check bit.
for opts in "cluster_size=4k,table_size=2" "cluster_size=4k,table_size=2,backing_file=b.raw,backing_fmt=raw"; do
    f="$SEEDS/seed-qed$i.qed"
    qemu-img create -q -f qed -u -o "$opts" "$f" 1M
    qemu-io -f qed -c 'write -P 0x5a 4k 8k' -c 'write -z 64k 8k' -c 'write -P 1 512k 4k' \
        -c abort "$f" >/dev/null 2>&1 || true
    i=$((i + 1))
done
head -c 65536 /dev/urandom > "$SEEDS/seed-random.raw"
# Read-only formats: cloop from the real tool, and the tests' hand-built cloop, bochs, dmg.
head -c 300000 /dev/urandom | cat - "$SEEDS/seed-random.raw" > "$SEEDS/cloop.in"
create_compressed_fs -q -B 65536 "$SEEDS/cloop.in" "$SEEDS/seed-cloop.cloop" >/dev/null 2>&1 || true
rm -f "$SEEDS/cloop.in"
/usr/bin/python3 - "$ROOT/tests/cli" "$SEEDS" <<'EOF' || true
import sys
sys.path.insert(0, sys.argv[1])
import test_bochs, test_cloop, test_dmg
out = sys.argv[2]
open(out + "/seed-cloop2.cloop", "wb").write(test_cloop.cloop(test_cloop.guest_blocks(4096, 6), 4096))
open(out + "/seed-bochs.bochs", "wb").write(test_bochs.bochs(1 << 20, data=test_bochs.DATA))
for fork in ("xml", "rsrc"):
    chunks = test_dmg.MIXED + [(test_dmg.UDBZ, 2, bytes(1024))]
    open(out + "/seed-dmg-" + fork + ".dmg", "wb").write(test_dmg.build(chunks, fork=fork)[0])
EOF
# A LUKS header area for fuzz-luks (cheap PBKDF2 so the harness unlocks it).
for opts in "" "cipher-alg=aes-128,cipher-mode=cbc,ivgen-alg=essiv"; do
    qemu-img create -q -f luks --object secret,id=s,data=123456 \
        -o key-secret=s,iter-time=1${opts:+,$opts} "$SEEDS/luks.tmp" 1M >/dev/null 2>&1 &&
        head -c 600000 "$SEEDS/luks.tmp" > "$SEEDS/seed-luks$i.luks"
    i=$((i + 1))
done
rm -f "$SEEDS/luks.tmp"
# --object specs for fuzz-object (the image harnesses just see small junk files)
printf 'secret,id=s,data=YWJj,format=base64' > "$SEEDS/obj-base64"
printf 'secret,id=s,keyid=k,iv=MTIzNDU2Nzg5MDEyMzQ1Ng==,format=base64,data=yEgloYj3AnSjAjqPpjbrBQ==' \
    > "$SEEDS/obj-aes"
printf '{"qom-type":"throttle-group","id":"t","x-bps-total":1}' > "$SEEDS/obj-json"
printf 'tls-creds-anon,id=t,endpoint=server,verify-peer=off' > "$SEEDS/obj-tls"
cp "$ROOT"/tests/fuzz/regressions/* "$SEEDS"/ 2>/dev/null || true

status=0
for h in "$BUILD"/tests/fuzz/fuzz-*; do
    [ -f "$h" ] && [ -x "$h" ] || continue
    name=$(basename "$h")
    corpus="$BUILD/fuzz-corpus/$name"
    mkdir -p "$corpus"
    echo "fuzz: $name for ${SECONDS_EACH}s"
    if ! "$h" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 \
            -artifact_prefix="$ART/$name-" -print_final_stats=1 "$corpus" "$SEEDS" \
            > "$BUILD/$name.log" 2>&1; then
        echo "fuzz: $name FOUND A PROBLEM (see $BUILD/$name.log and $ART)"
        grep -E "ERROR|SUMMARY" "$BUILD/$name.log" | head -5
        status=1
    else
        grep -E "stat::number_of_executed_units|cov:" "$BUILD/$name.log" | tail -1
    fi
done
exit $status
