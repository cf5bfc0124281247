#!/bin/sh
# Make one of the appliance's programs (Debian trixie: haproxy 3.0, nft 1.1) runnable on this
# bookworm host, so that the tests check and run the versions the appliance has, not only the
# host's (haproxy 2.6, nft 1.0):
#
#   tests/lbctl/bundle-binary.sh TRIXIE_ROOT TRIXIE_ROOT/usr/sbin/haproxy OUT_DIR
#
# TRIXIE_ROOT is a trixie tree with the program installed (the tests use the image build's package
# cache root). The binary gets trixie's loader and libraries, copied next to it and found through an
# RPATH, so that it also re-executes itself (haproxy's reload). Needs patchelf.
set -eu
root="$1"
program="$2"
out="$3"
name=$(basename "$program")
libs="$root/usr/lib/x86_64-linux-gnu"
loader="$root/usr/lib64/ld-linux-x86-64.so.2"
[ -x "$program" ] || { echo "no $program" >&2; exit 1; }
command -v patchelf >/dev/null || { echo "patchelf is missing (apt-get install patchelf)" >&2; exit 1; }
mkdir -p "$out/lib"
cp -L "$loader" "$out/lib/"
"$loader" --library-path "$libs" --list "$program" | awk '/=>/ {print $3}' | while read -r lib; do
    cp -L "$lib" "$out/lib/"
done
cp "$program" "$out/$name"
patchelf --set-interpreter "$out/lib/ld-linux-x86-64.so.2" --force-rpath --set-rpath "$out/lib" "$out/$name"
"$out/$name" --version 2>/dev/null | head -1 || "$out/$name" -v | head -1
