#!/usr/bin/env bash
# Install the Debian packages the build and the tests need, when they are missing and we may (root + apt-get).
# The interface package is built with cmake, g++ and ninja; the registry tests start Debian's docker-registry
# (the CNCF distribution registry, an OCI registry) on loopback, the farm's tests the mosquitto MQTT broker, the
# medicine tests the Orthanc PACS with its DICOMweb plugin and dcmtk's storescu. With `test`: only what the tests
# need beyond that (Chromium and a Korean font, for the console's pages), so that `make demo` installs no browser.
set -euo pipefail
needed=()
if [ "${1:-}" = test ]; then
  [ -x /usr/bin/chromium ] || needed+=(chromium)
  [ -d /usr/share/fonts/truetype/nanum ] || needed+=(fonts-nanum)
else
  command -v cmake >/dev/null || needed+=(cmake)
  command -v g++ >/dev/null || needed+=(g++)
  command -v ninja >/dev/null || needed+=(ninja-build)
  command -v docker-registry >/dev/null || needed+=(docker-registry)
  command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || needed+=(mosquitto)
  command -v Orthanc >/dev/null || needed+=(orthanc)
  [ -f /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] || needed+=(orthanc-dicomweb)
  [ -x /usr/bin/storescu ] || needed+=(dcmtk)
fi
if [ ${#needed[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
  echo "missing system packages: ${needed[*]} (install them with your package manager)" >&2
  exit 1
fi
echo "installing system packages: ${needed[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${needed[@]}"
