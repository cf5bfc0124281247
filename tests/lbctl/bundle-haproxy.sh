#!/bin/sh
# Make the appliance's HAProxy (Debian trixie, 3.0) runnable on this bookworm host, to check and
# run lbctl's configurations with the version the appliance has, not only the host's 2.6:
#
#   tests/lbctl/bundle-haproxy.sh [TRIXIE_ROOT] [OUT_DIR]
#   LBCTL_TEST_HAPROXY=OUT_DIR/haproxy .venv/bin/pytest tests/lbctl       # haproxy -c with it too
#   LBCTL_TEST_HAPROXY_BIN=OUT_DIR/haproxy .venv/bin/pytest tests/netns   # the whole netns suite
#
# TRIXIE_ROOT is a trixie tree with haproxy installed; by default the image build's package cache
# root. The binary gets trixie's loader and libraries (copied next to it, found through an RPATH),
# so that it also re-executes itself on a reload. Needs patchelf.
set -eu
root="${1:-/var/cache/lbimage/mkosi/debian~trixie~x86-64.cache}"
out="${2:-/var/tmp/lbctl-haproxy30}"
libs="$root/usr/lib/x86_64-linux-gnu"
loader="$root/usr/lib64/ld-linux-x86-64.so.2"
[ -x "$root/usr/sbin/haproxy" ] || { echo "no $root/usr/sbin/haproxy" >&2; exit 1; }
command -v patchelf >/dev/null || { echo "patchelf is missing (apt-get install patchelf)" >&2; exit 1; }
mkdir -p "$out/lib"
cp -L "$loader" "$out/lib/"
"$loader" --library-path "$libs" --list "$root/usr/sbin/haproxy" | awk '/=>/ {print $3}' | while read -r lib; do
    cp -L "$lib" "$out/lib/"
done
cp "$root/usr/sbin/haproxy" "$out/haproxy"
patchelf --set-interpreter "$out/lib/ld-linux-x86-64.so.2" --force-rpath --set-rpath "$out/lib" "$out/haproxy"
"$out/haproxy" -v | head -1
