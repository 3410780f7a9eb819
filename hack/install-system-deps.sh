#!/usr/bin/env bash
# Debian packages the tests and the demo need, installed only when missing: Prometheus, and the
# real servers the runbooks act on (PostgreSQL with HypoPG for RB-002, Redis for RB-003,
# Alertmanager as a trigger source), and Lua to run the Argo CD health checks docs/gitops.md ships.
set -euo pipefail
need=()
have_package() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
command -v prometheus >/dev/null 2>&1 || [ -x /usr/bin/prometheus ] || need+=(prometheus)
for package in postgresql postgresql-contrib postgresql-15-hypopg redis-server prometheus-alertmanager lua5.4; do
  have_package "$package" || need+=("$package")
done
[ ${#need[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "[install-system-deps] apt-get install ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
# The packages' own services are not wanted: the harness starts each server as a process of its
# own on loopback. policy-rc.d keeps the maintainer scripts from starting them.
policy=/usr/sbin/policy-rc.d
created_policy=""
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
  $sudo chmod +x "$policy"
  created_policy=1
fi
trap '[ -n "$created_policy" ] && $sudo rm -f "$policy"' EXIT
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
