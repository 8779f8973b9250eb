# SPDX-License-Identifier: MIT
"""--object: the types, checks, messages and help of qemu-img and qemu-io, against the oracle.

What secrets decrypt to is checked in tests/unit/test-secret.c; the vectors it uses are
proven here by the oracle, which unlocks a LUKS image with them.
"""
import pytest

from conftest import retry_cpu, strip_child

KEY = "12345678901234567890123456789012"
IV = "MTIzNDU2Nzg5MDEyMzQ1Ng=="

SPECS = [
    # secrets
    ["secret,id=x,data=a"],
    ["secret,id=x,data="],
    ["secret,id=x,data=a,format=raw"],
    ["secret,id=x,data=YWJj,format=base64"],
    ["secret,id=x,data=!!,format=base64"],
    ["secret,id=x,data=YW Jj,format=base64"],
    ["secret,id=x"],
    ["secret,data=a"],
    ["secret,bogus=1"],
    ["secret,id=x,bogus=1"],
    ["secret,id=1,bogus=1"],
    ["secret,id=x,data=a,format=bogus"],
    ["secret,id=x,data=a,file=/etc/hostname"],
    ["secret,id=x,file=/nonexistent"],
    ["secret,id=x,file=/etc"],
    ["secret,id=x,file=/etc/hostname"],
    ["secret,id=1x,data=a"],
    ["secret,id=,data=a"],
    ["secret,id=a.b-c_d,data=a"],
    ["secret,id=x,data=a,id=y"],
    ["secret,qom-type=secret,id=x,data=a"],
    ["qom-type=secret,qom-type=foo,id=x,data=a"],
    ["secret,id=x,data=a,keyid=nokey"],
    ["secret,id=x,data=a,keyid="],
    ["secret,id=x,data=a,iv=zz"],
    ["secret,id=x,data=!!,format=base64,keyid=nokey"],
    ["secret,id=x,data=a", "secret,id=x,data=b"],
    ["secret,id=x,data=a", "secret,id=x"],
    ["secret,id=x,data=a", "throttle-group,id=x"],
    ["secret,id=k,data=abc", "secret,id=x,data=YWJj,format=base64,keyid=k"],
    [f"secret,id=k,data={KEY}", "secret,id=x,data=YWJj,format=base64,keyid=k"],
    [f"secret,id=k,data={KEY}", "secret,id=x,data=YWJj,format=base64,keyid=k,iv=abc"],
    [f"secret,id=k,data={KEY}", f"secret,id=x,data=YWJj,format=base64,keyid=k,iv={IV}"],
    [f"secret,id=k,data={KEY}", f"secret,id=x,data=YWJj,keyid=k,iv={IV}"],
    [f"secret,id=k,data={KEY}", "secret,id=x,keyid=k,iv=!!,data=a"],
    [f"secret,id=k,data={KEY}", f"secret,id=x,keyid=k,iv={IV},format=base64,"
                                "data=OZC9KZc43vbaA1dh0j0mjQ=="],
    [f"secret,id=k,data={KEY}", f"secret,id=x,keyid=k,iv={IV},format=base64,"
                                "data=yEgloYj3AnSjAjqPpjbrBQ=="],
    ["secret,id=x,data=a,keyid=k", "secret,id=k,data=1"],
    ['{"qom-type":"secret","id":"x","data":"a"}'],
    ['{"qom-type":"secret","id":"x"}'],
    ['{"qom-type":"foo","id":"x"}'],
    ['{"id":"x"}'],
    # other types
    ["foo,id=x"], ["foo,bogus=1"], ["id=x"], [""],
    ["iothread,id=x"], ["iothread"], ["memory-backend-ram,id=m"], ["can-bus,id=c"],
    ["authz-listfile,id=a"], ["authz-list-file,id=a"], ["authz-pam,id=a"],
    ["authz-simple,id=a"], ["authz-simple,id=a,identity=me"],
    ["authz-list,id=a"], ["authz-list,id=a,policy=bogus"], ["authz-list,id=a,policy=allow"],
    ["main-loop,id=m"], ["main-loop,id=m,aio-max-batch=x"], ["main-loop,id=m,aio-max-batch=4"],
    ["pr-manager-helper,id=p"], ["secret_keyring,id=k"], ["secret_keyring,id=k,serial=1"],
    ["secret_keyring,id=k,serial=x"], ["thread-context,id=t"],
    ["throttle-group,id=t"], ["throttle-group,id=t,bogus=1"],
    ["throttle-group,id=t,x-bps-total=abc"], ["throttle-group,id=t,x-bps-total=1000"],
    ["tls-creds-anon,id=t"], ["tls-creds-anon,id=t,verify-peer=maybe"],
    ["tls-creds-anon,id=t,verify-peer=off"], ["tls-creds-anon,id=t,endpoint=bogus"],
    ["tls-creds-psk,id=t"], ["tls-creds-x509,id=t"], ["tls-creds-psk,id=t,dir=/nonexistent"],
    ["tls-creds-x509,id=t,dir=/nonexistent"], ["tls-cipher-suites,id=t"],
]

HELP_SPECS = ["help", "?", "secret,help", "foo,help", "iothread,help", "throttle-group,help",
              "authz-list,help", "authz-list-file,help", "authz-listfile,help", "authz-simple,help",
              "main-loop,help", "pr-manager-helper,help", "secret_keyring,help",
              "thread-context,help", "tls-cipher-suites,help", "tls-creds-anon,help",
              "tls-creds-psk,help", "tls-creds-x509,help", "secret,id=x,help"]


@pytest.fixture
def img(both, tmp_path):
    ours, oracle = both
    assert oracle.img("create", "-q", "-f", "qcow2", "t.qcow2", "1M").rc == 0
    return ours, oracle


def object_args(specs):
    args = []
    for s in specs:
        args += ["--object", s]
    return args


@pytest.mark.parametrize("specs", SPECS, ids=lambda s: " ".join(s) or "(empty)")
def test_object_matches_oracle(img, specs):
    ours, oracle = img
    a = ours.img("info", *object_args(specs), "t.qcow2")
    b = oracle.img("info", *object_args(specs), "t.qcow2")
    assert (a.rc, a.err) == (b.rc, b.err)
    assert strip_child(a.out) == b.out


@pytest.mark.parametrize("specs", [SPECS[0], SPECS[6], SPECS[16], SPECS[26], ["foo,id=x"]],
                         ids=lambda s: " ".join(s))
def test_object_in_qemu_io_matches_oracle(img, specs):
    ours, oracle = img
    a = ours.io(*object_args(specs), "-c", "read 0 512", "t.qcow2")
    b = oracle.io(*object_args(specs), "-c", "read 0 512", "t.qcow2")
    assert (a.rc, a.err) == (b.rc, b.err)
    assert a.out.splitlines()[:1] == b.out.splitlines()[:1]


@pytest.mark.parametrize("spec", HELP_SPECS)
def test_object_help_matches_oracle(img, spec):
    ours, oracle = img
    a = ours.img("info", "--object", spec, "t.qcow2")
    b = oracle.img("info", "--object", spec, "t.qcow2")
    assert (a.rc, a.out, a.err) == (b.rc, b.out, b.err)
    assert a.rc == 0 and a.out


@pytest.mark.parametrize("cmd", [["create", "-f", "qcow2", "n.qcow2", "1M"],
                                 ["convert", "-O", "raw", "t.qcow2", "o.raw"],
                                 ["check", "t.qcow2"], ["map", "t.qcow2"],
                                 ["compare", "t.qcow2", "t.qcow2"], ["resize", "t.qcow2", "2M"],
                                 ["snapshot", "-l", "t.qcow2"], ["measure", "t.qcow2"],
                                 ["amend", "-o", "lazy_refcounts=on", "t.qcow2"],
                                 ["rebase", "-u", "-b", "", "t.qcow2"],
                                 ["commit", "t.qcow2"],
                                 ["bitmap", "--add", "t.qcow2", "b0"],
                                 ["dd", "if=t.qcow2", "of=o.raw"]])
def test_every_command_checks_objects(img, cmd):
    ours, oracle = img
    bad = ["--object", "secret,id=x"]
    a = ours.img(cmd[0], *bad, *cmd[1:])
    b = oracle.img(cmd[0], *bad, *cmd[1:])
    assert (a.rc, a.err) == (b.rc, b.err)
    assert a.err == "qemu-img: Either 'file' or 'data' must be provided\n"


@pytest.mark.parametrize("ciphertext,password", [
    ("yEgloYj3AnSjAjqPpjbrBQ==", "pass"),  # PKCS#7 padding, as openssl enc writes it
    ("+z6oVMbXyV7Lqt99ftTSjQ==", "passpasspassp"),  # "passpasspassp\3\3\3": last byte counts
    ("HtIDHaKY/uQxdCFUVtNuKCvFMRHpRjFrQa62bF0ngc4=", "a secret of 31 bytes, no more.."),
])
def test_encrypted_secret_vectors_unlock_in_qemu(oracle, ciphertext, password):
    """The vectors of tests/unit/test-secret.c decrypt in QEMU to what the unit test expects."""
    enc = ["--object", f"secret,id=k,data={KEY}",
           "--object", f"secret,id=s,keyid=k,iv={IV},format=base64,data={ciphertext}"]
    r = retry_cpu(oracle, "create", "-q", "-f", "luks", *enc, "-o", "key-secret=s,iter-time=100",
                  "v.luks", "1M")
    assert r.rc == 0, r
    plain = ["--object", "secret,id=s,data=" + password.replace(",", ",,"), "--image-opts",
             "driver=luks,key-secret=s,file.filename=v.luks"]
    assert oracle.io(*plain, "-c", "read 0 512").rc == 0
    wrong = ["--object", "secret,id=s,data=" + password.replace(",", ",,") + "x", "--image-opts",
             "driver=luks,key-secret=s,file.filename=v.luks"]
    assert "Invalid password" in oracle.io(*wrong, "-c", "read 0 512").err
