# syntax=docker/dockerfile:1
# sixpn container image: TypeScript is compiled in a build stage; the runtime stage holds the
# compiled JavaScript, production dependencies only, and the WireGuard tools the gateway drives.
# It runs as the unprivileged user "sixpn". See config/docker.md for how to run it.

ARG NODE_IMAGE=node:20-bookworm-slim

# ---- build: all dependencies (TypeScript is a dev dependency), then tsc -> dist/ ----
FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
# --ignore-scripts: "prepare" would run tsc before the sources are copied.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
RUN npm run build

# ---- runtime ----
FROM ${NODE_IMAGE} AS runtime
# wireguard-go + wireguard-tools + iproute2 + nftables: the WireGuard gateway role.
# libcap2-bin: setcap below.
RUN apt-get update \
 && apt-get install -y --no-install-recommends wireguard-go wireguard-tools iproute2 nftables libcap2-bin \
 && rm -rf /var/lib/apt/lists/*
# The gateway runs these as the non-root user, so they carry CAP_NET_ADMIN as a file capability.
# It needs the container started with --cap-add NET_ADMIN (without it these tools refuse to
# run, which only matters to the gateway, which needs NET_ADMIN anyway).
RUN for t in wireguard-go wg ip nft; do setcap cap_net_admin+ep "$(readlink -f "$(command -v "$t")")"; done
# node may bind ports below 1024 (DNS on 53, service ports such as 80) as the non-root user, also
# with --network host, where Docker's unprivileged-port sysctl does not apply. NET_BIND_SERVICE
# is in Docker's default capability set; with --cap-drop ALL add it back.
RUN setcap cap_net_bind_service+ep "$(readlink -f "$(command -v node)")"

ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
# Production dependencies only; --ignore-scripts because "prepare" runs tsc (not installed here).
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force
COPY --from=build /src/dist ./dist
# regions.csv (the region table), demo.toml and the commented reference sixpn.example.toml.
COPY config ./config

# The node's default config: admin API on all interfaces of the container (token required:
# pass SIXPN_TOKEN), state under /var/lib/sixpn. Mount your own at /etc/sixpn/sixpn.toml.
COPY <<'TOML' /etc/sixpn/sixpn.toml
# Default container config; see /app/config/sixpn.example.toml for every key.
[node]
name = "sixpn"
region = "ewr"

[catalog]
store = "embedded"
path = "/var/lib/sixpn/catalog.json"

[control]
# Reachable through -p 4280:4280. The token comes from SIXPN_TOKEN; without one the node
# refuses to start (there is no open admin API). /metrics needs the token too on this listener.
listen = "[::]:4280"

[dns]
# fdaa::3 and each org's <prefix>::3 (start the container with
# --sysctl net.ipv6.ip_nonlocal_bind=1, or route fdaa::/16 to it).
port = 53

[wireguard]
state_file = "/var/lib/sixpn/gateway.json"
TOML

RUN groupadd --system sixpn \
 && useradd --system --gid sixpn --home-dir /var/lib/sixpn --shell /usr/sbin/nologin sixpn \
 && mkdir -p /var/lib/sixpn /var/run/wireguard /app/data \
 && chown sixpn:sixpn /var/lib/sixpn /var/run/wireguard /app/data
VOLUME ["/var/lib/sixpn"]
USER sixpn

# 4280/tcp admin API, dashboard, /metrics, /healthz
# 53/udp+tcp .internal DNS
# 80/tcp, 443/tcp Flycast proxy service ports (whatever your apps' [[services.ports]] say)
# 51820/udp WireGuard gateway
EXPOSE 4280/tcp 53/udp 53/tcp 80/tcp 443/tcp 51820/udp

# /healthz needs no token and says only "ok". Set SIXPN_HEALTHCHECK_URL when the admin listener
# is on another port.
ENV SIXPN_HEALTHCHECK_URL=http://127.0.0.1:4280/healthz
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch(process.env.SIXPN_HEALTHCHECK_URL,{signal:AbortSignal.timeout(2500)}).then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]

ENTRYPOINT ["node", "dist/cli/main.js"]
CMD ["up", "--config", "/etc/sixpn/sixpn.toml"]
