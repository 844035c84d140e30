#!/usr/bin/env bash
# Make a test CA and certificates for dcache's TLS (tls.* settings) with
# openssl: for tests, docker-compose.secure.yml and README's production
# section. Not a PKI: for production use your own CA.
#
# Usage: scripts/make-certs.sh [options] OUT_DIR NAME...
#
#   Writes OUT_DIR/ca.crt and OUT_DIR/ca.key (reused when they exist, so
#   certificates made by later runs chain to the same CA), then for every
#   NAME: OUT_DIR/NAME.crt and OUT_DIR/NAME.key, a P-256 key and a
#   certificate signed by the CA for both server and client use, whose
#   subject alternative names are NAME (a DNS name, or an IP address),
#   localhost and 127.0.0.1, plus any --san. A node's NAME is its node id
#   (node.id): peers check that its certificate names it. A client
#   certificate (for tls.client_auth) is made the same way.
#
# Options:
#   --days N       validity in days (default 825); --days -1 makes a
#                  certificate that has already expired (tests)
#   --san LIST     extra subject alternative names, comma-separated, e.g.
#                  DNS:cache.example,IP:10.0.0.5
#   --no-local     leave localhost and 127.0.0.1 out
#
# Files: keys are mode 0600 (0644 with CERTS_WORLD_READABLE=1, for a
# container that runs as another user than the one who made them).
set -euo pipefail

die() { echo "make-certs.sh: $*" >&2; exit 1; }

days=825
extra=""
local_sans="DNS:localhost,IP:127.0.0.1"
while [[ $# -gt 0 ]]; do
    case $1 in
    --days) days=${2:?--days needs a value}; shift 2 ;;
    --san) extra=${2:?--san needs a value}; shift 2 ;;
    --no-local) local_sans=""; shift ;;
    -h | --help) sed -n '2,28p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) die "unknown option $1 (try --help)" ;;
    *) break ;;
    esac
done
[[ $# -ge 2 ]] || die "usage: make-certs.sh [options] OUT_DIR NAME... (try --help)"
command -v openssl >/dev/null || die "openssl is required"
out=$1
shift
mkdir -p "$out"
key_mode=600
[[ ${CERTS_WORLD_READABLE:-0} == 1 ]] && key_mode=644

# Validity starts an hour back (as public CAs backdate): a node whose clock
# runs behind (the fault suite's clock-skew restarts a node at -90 s) still
# accepts certificates made a moment ago. OpenSSL 3.0's `x509 -req` always
# starts at "now", so certificates are signed with `openssl ca`, which takes
# explicit dates, from a throwaway database in a temp dir.
stamp() { date -u -d "@$1" +%Y%m%d%H%M%SZ; }
now=$(date +%s)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
: >"$work/index.txt"
cat >"$work/ca.cnf" <<CNF
[ca]
default_ca = test_ca
[test_ca]
database = $work/index.txt
new_certs_dir = $work
rand_serial = yes
default_md = sha256
policy = any
unique_subject = no
[any]
commonName = supplied
CNF
# sign CSR OUT START END EXTFILE [CA options...]
sign() {
    local csr=$1 crt=$2 start=$3 end=$4 ext=$5
    shift 5
    openssl ca -batch -notext -config "$work/ca.cnf" -in "$csr" -out "$crt" \
        -startdate "$(stamp "$start")" -enddate "$(stamp "$end")" -extfile "$ext" "$@" 2>"$work/err"
}

if [[ ! -f $out/ca.crt || ! -f $out/ca.key ]]; then
    cat >"$work/ca.ext" <<EXT
basicConstraints=critical,CA:TRUE
keyUsage=critical,keyCertSign,cRLSign
subjectKeyIdentifier=hash
EXT
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$out/ca.key" -out "$work/ca.csr" -subj "/CN=dcache test CA $now" 2>/dev/null ||
        die "cannot make the CA key"
    sign "$work/ca.csr" "$out/ca.crt" $((now - 3600)) $((now + 3650 * 86400)) "$work/ca.ext" \
        -selfsign -keyfile "$out/ca.key" ||
        die "cannot make the CA: $(cat "$work/err")"
    chmod "$key_mode" "$out/ca.key"
fi

for name in "$@"; do
    if [[ $name =~ ^[0-9.]+$ || $name == *:* ]]; then
        san="IP:$name"
    else
        san="DNS:$name"
    fi
    [[ -n $local_sans ]] && san="$san,$local_sans"
    [[ -n $extra ]] && san="$san,$extra"
    ext=$work/$name.ext
    cat >"$ext" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=$san
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
EXT
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$out/$name.key" -out "$out/$name.csr" -subj "/CN=$name" 2>/dev/null ||
        die "cannot make the key of $name"
    # --days -1 (expired): valid from two days back to one day back.
    if ((days < 0)); then
        end=$((now + days * 86400)); start=$((end - 86400))
    else
        start=$((now - 3600)); end=$((now + days * 86400))
    fi
    sign "$out/$name.csr" "$out/$name.crt" "$start" "$end" "$ext" \
        -cert "$out/ca.crt" -keyfile "$out/ca.key" ||
        die "cannot sign the certificate of $name: $(cat "$work/err")"
    rm -f "$out/$name.csr" "$ext"
    chmod "$key_mode" "$out/$name.key"
    echo "$out/$name.crt ($san, $days days)"
done
