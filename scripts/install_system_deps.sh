#!/usr/bin/env bash
# Installs the Debian packages the pipeline needs, only those missing:
# flite + sox (embedded corpus), wordnet-base + bible-kjv + fortunes (its English text),
# cmake + Boost + zlib (to build KenLM's lmplz/build_binary).
set -euo pipefail
pkgs=(flite sox wordnet-base bible-kjv fortunes
      cmake g++ make libboost-program-options-dev libboost-system-dev libboost-thread-dev
      libboost-test-dev zlib1g-dev libbz2-dev liblzma-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "installing Debian packages: ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
