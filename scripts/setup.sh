#!/usr/bin/env bash
# Set up a fresh Debian 12 machine (as root) for imgscan: the system tools its tests and
# demo use, and imgscan itself with its test dependencies (pip install -e '.[test]').
# Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# Real components the tests talk to (see ../shared/PLATFORM.md): registry, converters,
# rpm tooling, compilers for test binaries, checksec, a headless browser for the HTML report,
# redis-server for the serve/worker/audit tests.
APT_PACKAGES=(
  skopeo umoci docker-registry apache2-utils
  fuse-overlayfs fuse3
  rpm golang-go gcc libc6-dev binutils debootstrap
  checksec libcap2-bin chromium zstd gzip
  podman docker.io uidmap
  redis-server
)
command -v npm >/dev/null 2>&1 || APT_PACKAGES+=(npm)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing system packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
    >/dev/null
fi

python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore --upgrade "setuptools>=70.1" wheel
python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore -e '.[test]'
echo "imgscan $(python3 -c 'import imgscan; print(imgscan.__version__)') is set up"
