#!/usr/bin/env bash
# Builds KenLM's lmplz and build_binary into $1/bin (Debian does not package them), from the
# kenlm source archive on the package registry. Usage: build_kenlm_tools.sh TOOLS_DIR PYTHON
set -euo pipefail
dest=$(realpath -m "$1"); python=$2
version=0.3.0
if [ -x "$dest/bin/lmplz" ] && [ -x "$dest/bin/build_binary" ]; then
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$python" -m pip download -q --no-deps --no-binary kenlm "kenlm==$version" -d "$work"
tar xzf "$work/kenlm-$version.tar.gz" -C "$work"
cmake -S "$work/kenlm-$version" -B "$work/build" -DCMAKE_BUILD_TYPE=Release >"$work/cmake.log" 2>&1 \
  || { cat "$work/cmake.log"; exit 1; }
make -C "$work/build" -j"$(nproc)" lmplz build_binary >"$work/make.log" 2>&1 \
  || { tail -50 "$work/make.log"; exit 1; }
mkdir -p "$dest/bin"
cp "$work/build/bin/lmplz" "$work/build/bin/build_binary" "$dest/bin/"
echo "built KenLM tools in $dest/bin"
