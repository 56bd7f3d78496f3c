#!/usr/bin/env bash
# Install Debian packages that are missing; silent when all are already present.
# Usage: scripts/ensure-apt.sh PKG...
# Services shipped by the packages (sshd, the distro's PostgreSQL cluster) are
# not started by the install: tests run their own instances bound to 127.0.0.1.
set -euo pipefail

[[ $# -gt 0 ]] || { echo "usage: $0 PKG..." >&2; exit 2; }

missing=()
for pkg in "$@"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
    [[ $status == installed ]] || missing+=("$pkg")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

echo "ensure-apt: installing ${missing[*]}" >&2

sudo=()
if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then
        sudo=(sudo)
    else
        echo "ensure-apt: missing packages (${missing[*]}) and not root; install them by hand" >&2
        exit 1
    fi
fi

# Keep package postinst scripts from starting daemons, unless a policy is already set.
policy=/usr/sbin/policy-rc.d
if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
    "${sudo[@]}" chmod 755 "$policy"
    trap '"${sudo[@]}" rm -f "$policy"' EXIT
fi

export DEBIAN_FRONTEND=noninteractive
apt_opts=(-q -o DPkg::Lock::Timeout=300)
"${sudo[@]}" apt-get "${apt_opts[@]}" update >&2
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get "${apt_opts[@]}" install -y --no-install-recommends "${missing[@]}" >&2
