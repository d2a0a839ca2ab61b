#!/usr/bin/env bash
# Two network-attached modules of one Security World and a client that shares its load over both, set up
# as on three hosts: host A (module A: makes the world and a key, serves them, is the world's RFS), host B
# (module B: enrolls with A, pulls the world with rfs-sync, is programmed into it with the ACS, serves)
# and host C (a client: enrolls with both, signs with pkcs11-tool through both, OpenSSL checks).
# Run here on one machine, in an empty folder: each host is a folder of its own (its own NFAST_KMDATA and
# hardserver socket). Nothing passes between the hosts but the TLS channel and what the comments say a
# person carries: the ESN and KNETI hash read on a module's front panel, a client key hash, the ACS card.
set -euo pipefail

MODULE_A=${MODULE_A:-127.0.0.1:9004}   # where host A's hardserver listens (HOST:PORT)
MODULE_B=${MODULE_B:-127.0.0.1:9005}   # where host B's hardserver listens
SO=${SO:-$(cd "$(dirname "$0")/../.." && pwd)/build/libsoftshield-pkcs11.so}
CLIENT_PYTHON=${CLIENT_PYTHON:-python}   # host C's own Python with python-pkcs11 (any version)
HOSTS=$PWD                             # host-a/, host-b/, host-c/ are made here

# Each host's own settings. On a real host NFAST_KMDATA is /opt/nfast/kmdata (or cknfastrc) and the
# hardserver socket is the default one; here each host names its own, as three hosts share one machine.
host() {
    export NFAST_KMDATA=$HOSTS/host-$1/kmdata
    export SOFTSHIELD_HARDSERVER=$HOSTS/host-$1/hardserver.sock
    mkdir -p "$NFAST_KMDATA"
}

# Wait until a hardserver answers on the network (what the front panel shows, read unauthenticated).
await() {
    for _ in $(seq 600); do
        softshield anonkneti "$1" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "no hardserver answers on $1" >&2
    return 1
}

# Stop the module hosts' hardservers however the script ends.
stop_servers() {
    for h in a b; do
        if [ -e "$HOSTS/host-$h/hardserver.pid" ]; then
            softshield hardserver --stop --socket "$HOSTS/host-$h/hardserver.sock" || true
        fi
    done
}
trap stop_servers EXIT

### Host A: module A makes the world (ACS of 1 card), makes a module-protected key, serves both on the
### network and is the world's RFS.
(
    host a
    printf 'acs-1.card 1111\n' > "$HOSTS/host-a/acs-pins.txt"   # <card file> <PIN>
    softshield new-world --initialize --acs-quorum=1/1 --pin-file "$HOSTS/host-a/acs-pins.txt"
    softshield hardserver --listen "$MODULE_A" --rfs >"$HOSTS/host-a/hardserver.log" 2>&1 &
    await "$MODULE_A"
    softshield generatekey --batch simple type=RSA size=2048 protect=module ident=sharedkey plainname=sharedkey
    softshield anonkneti --kmdata "$NFAST_KMDATA" > "$HOSTS/host-a/front-panel.txt"   # ESN and KNETI hash
)
read -r A_ESN A_KNETI < "$HOSTS/host-a/front-panel.txt"   # read off A's front panel, carried to B and C
echo "module A: $A_ESN $A_KNETI"

### Host B: module B enrolls with A as a privileged client (it will commit the world file, which is
### world administration), pulls the world from A's RFS, is programmed into the world with the ACS card,
### commits the world file that now names it (its module file, which holds its key, stays on B) and
### serves the world's keys on the network.
(
    host b
    softshield nethsmenroll --privileged "$MODULE_A" "$A_ESN" "$A_KNETI" | tee "$HOSTS/host-b/enroll.txt"
)
B_CLIENT=$(sed -n 's/^client key hash: //p' "$HOSTS/host-b/enroll.txt")   # carried to A's operator
(
    host a
    softshield hardserver permit --privileged "$B_CLIENT"
)
(
    host b
    softshield rfs-sync --setup "$MODULE_A"
    softshield rfs-sync --update
    # The ACS card, carried from A's reader to B's (a card here is a file in the reader folder).
    mkdir -p "$NFAST_KMDATA/reader"
    cp "$HOSTS/host-a/kmdata/reader/acs-1.card" "$NFAST_KMDATA/reader/"
    printf 'acs-1.card 1111\n' > "$HOSTS/host-b/acs-pins.txt"
    softshield new-world --program --pin-file "$HOSTS/host-b/acs-pins.txt"
    softshield rfs-sync --commit
    softshield hardserver --listen "$MODULE_B" >"$HOSTS/host-b/hardserver.log" 2>&1 &
    await "$MODULE_B"
    softshield anonkneti --kmdata "$NFAST_KMDATA" > "$HOSTS/host-b/front-panel.txt"
)
read -r B_ESN B_KNETI < "$HOSTS/host-b/front-panel.txt"   # read off B's front panel, carried to C
echo "module B: $B_ESN $B_KNETI"

### Host C: a client. It enrolls with both modules (one client key; each module pins its own KNETI hash),
### and each module host admits it.
(
    host c
    softshield nethsmenroll "$MODULE_A" "$A_ESN" "$A_KNETI"
    softshield nethsmenroll "$MODULE_B" "$B_ESN" "$B_KNETI" | tee "$HOSTS/host-c/enroll.txt"
)
C_CLIENT=$(sed -n 's/^client key hash: //p' "$HOSTS/host-c/enroll.txt")   # carried to A's and B's operators
( host a; softshield hardserver permit "$C_CLIENT" )
( host b; softshield hardserver permit "$C_CLIENT" )

### Host C: any PKCS#11 program, with the load shared over both modules. pkcs11-tool signs with the key
### made on A, OpenSSL checks the signature; Python opens two sessions (one on each module) and signs in
### each: PKCS#1 v1.5 is deterministic, so one key gives one signature.
(
    host c
    export SOFTSHIELD_HARDSERVER=tls://$MODULE_A,tls://$MODULE_B
    cd "$HOSTS/host-c"
    echo 'signed through two modules' > msg.txt
    pkcs11-tool --module "$SO" --slot-index 0 --sign -m SHA256-RSA-PKCS --label sharedkey -i msg.txt -o msg.sig
    pkcs11-tool --module "$SO" --slot-index 0 --read-object --type pubkey --label sharedkey -o sharedkey.der
    openssl dgst -sha256 -verify sharedkey.der -keyform DER -signature msg.sig msg.txt
    "$CLIENT_PYTHON" - "$SO" <<'PY'
import sys, pkcs11
from pkcs11 import KeyType, Mechanism, ObjectClass
lib = pkcs11.lib(sys.argv[1])
token = lib.get_token(token_label="loadshared accelerator")
message, by_pkcs11_tool = open("msg.txt", "rb").read(), open("msg.sig", "rb").read()
with token.open() as first, token.open() as second:   # one session on module A, the next on module B
    signatures = {session.get_key(ObjectClass.PRIVATE_KEY, KeyType.RSA, label="sharedkey")
                  .sign(message, mechanism=Mechanism.SHA256_RSA_PKCS) for session in (first, second)}
same = "the same as pkcs11-tool" if signatures == {by_pkcs11_tool} else "NOT the same as pkcs11-tool"
print(f"{lib.library_description}: 2 sessions, {len(signatures)} signature: {same}")
PY
)

### Host A goes away (its operator stops the hardserver). Host C's next program still signs: A does not
### answer, so its session goes to B, which opens the key made on A.
( host a; softshield hardserver --stop )
(
    host c
    export SOFTSHIELD_HARDSERVER=tls://$MODULE_A,tls://$MODULE_B
    cd "$HOSTS/host-c"
    pkcs11-tool --module "$SO" --slot-index 0 --sign -m SHA256-RSA-PKCS --label sharedkey -i msg.txt -o msg-b.sig
    cmp msg.sig msg-b.sig && echo "module B alone: the same signature"
)
( host b; softshield hardserver --stop )
