#!/bin/sh
# Runs a command inside a private network namespace, so that tests can route fdaa::/16 to
# loopback, bind machines and callers to real 6PN addresses and add addresses to lo without
# touching this machine's network configuration. Needs root (or unprivileged user namespaces);
# without either, runs the command as it is and the tests that need 6PN addresses skip.
set -eu
if [ "${SIXPN_IN_NETNS:-}" = "1" ]; then exec "$@"; fi
setup='ip link set lo up && ip -6 route add local fdaa::/16 dev lo && sysctl -qw net.ipv6.ip_nonlocal_bind=1 && sysctl -qw net.ipv4.ip_nonlocal_bind=1'
if [ "$(id -u)" = "0" ] && command -v unshare >/dev/null 2>&1 && command -v ip >/dev/null 2>&1; then
  export SIXPN_IN_NETNS=1
  exec unshare -n -- sh -c "$setup && exec \"\$@\"" sh "$@"
fi
if command -v unshare >/dev/null 2>&1 && unshare -rn true 2>/dev/null; then
  export SIXPN_IN_NETNS=1
  exec unshare -rn -- sh -c "$setup && exec \"\$@\"" sh "$@"
fi
echo "netns-run: no private network namespace available (not root, no user namespaces); 6PN tests will skip" >&2
exec "$@"
