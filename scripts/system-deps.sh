#!/usr/bin/env bash
# Installs the Debian packages the test suite talks to for real: mosquitto (the MQTT broker the tests start),
# prometheus (the server the dashboard test starts, and promtool), chromium and chromium-driver (the report page test), systemd (systemd-analyze),
# fonts-dejavu-core (the PDF exports' Unicode font; without it they fall back to Latin-1 Helvetica),
# fonts-wqy-zenhei (the PDF exports' font for Chinese, Japanese and Korean, which DejaVu lacks),
# postgresql (the PostgreSQL store's tests run initdb and pg_ctl from /usr/lib/postgresql/*/bin in a temporary folder).
# openssl (the HTTPS test makes its own self-signed certificate).
# poppler-utils (pdftotext: the e-mail tests read the text of a mailed PDF report).
# Run as root it installs what is missing; otherwise it says what is missing, and those tests are skipped
# (under CI=true they fail instead).
set -euo pipefail

need=()
command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
{ command -v prometheus >/dev/null && command -v promtool >/dev/null; } || need+=(prometheus)
command -v chromium >/dev/null || need+=(chromium)
command -v chromedriver >/dev/null || need+=(chromium-driver)
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v openssl >/dev/null || need+=(openssl)
command -v pdftotext >/dev/null || need+=(poppler-utils)
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need+=(fonts-dejavu-core)
[ -f /usr/share/fonts/truetype/wqy/wqy-zenhei.ttc ] || need+=(fonts-wqy-zenhei)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || command -v initdb >/dev/null || need+=(postgresql)
[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  echo "installing: ${need[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
else
  echo "not installed (tests that need them will be skipped): ${need[*]}" >&2
  echo "install them with: sudo apt-get install ${need[*]}" >&2
fi
