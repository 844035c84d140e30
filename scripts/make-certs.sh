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

if [[ ! -f $out/ca.crt || ! -f $out/ca.key ]]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$out/ca.key" -out "$out/ca.crt" -days 3650 \
        -subj "/CN=dcache test CA $(date +%s)" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null ||
        die "cannot make the CA"
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
    ext=$(mktemp)
    trap 'rm -f "$ext"' EXIT
    cat >"$ext" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=$san
EXT
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$out/$name.key" -out "$out/$name.csr" -subj "/CN=$name" 2>/dev/null ||
        die "cannot make the key of $name"
    openssl x509 -req -in "$out/$name.csr" -CA "$out/ca.crt" -CAkey "$out/ca.key" \
        -CAcreateserial -out "$out/$name.crt" -days "$days" -extfile "$ext" 2>/dev/null ||
        die "cannot sign the certificate of $name"
    rm -f "$out/$name.csr" "$ext"
    chmod "$key_mode" "$out/$name.key"
    echo "$out/$name.crt ($san, $days days)"
done
