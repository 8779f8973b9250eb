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
# QED: small clusters, data, zero clusters, a backing name (raw flag) and the need-check bit.
for opts in "cluster_size=4k,table_size=2" "cluster_size=4k,table_size=2,backing_file=b.raw,backing_fmt=raw"; do
    f="$SEEDS/seed-qed$i.qed"
    qemu-img create -q -f qed -u -o "$opts" "$f" 1M
    qemu-io -f qed -c 'write -P 0x5a 4k 8k' -c 'write -z 64k 8k' -c 'write -P 1 512k 4k' \
        -c abort "$f" >/dev/null 2>&1 || true
    i=$((i + 1))
done
head -c 65536 /dev/urandom > "$SEEDS/seed-random.raw"
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
