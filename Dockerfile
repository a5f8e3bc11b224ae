# syntax=docker/dockerfile:1
# riskgate in a container: a multi-stage build, Debian 12 (bookworm) on both sides
# so the binary links against the same glibc it runs with.
#
#   docker build -t riskgate .
#   docker compose -f deploy/compose.yaml --env-file deploy/.env up -d
#
# The production binary leaves out the demo (simulated devices, embedded broker):
# --no-default-features. SQLite is built in (rusqlite "bundled"), TLS is rustls, so
# the runtime image needs only glibc and the CA certificates.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# Cache mounts (BuildKit): the registry and target/ survive between builds, so a
# source change recompiles riskgate, not its 300 dependencies. target/ is a cache,
# not a layer, hence the copy out in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --no-default-features --bin riskgate \
 && install -D -m 0755 target/release/riskgate /out/usr/bin/riskgate

FROM debian:bookworm-slim
# ca-certificates: only for brokers whose CA is a public one; a site's own CA is a file
# named in the config (tls.ca_file).
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 riskgate \
 && useradd --system --uid 10001 --gid riskgate --home-dir /var/lib/riskgate \
      --shell /usr/sbin/nologin riskgate \
 && install -d -o riskgate -g riskgate -m 0750 /var/lib/riskgate \
 && install -d -o root -g riskgate -m 0750 /etc/riskgate
COPY --from=build /out/usr/bin/riskgate /usr/bin/riskgate
COPY --chown=root:riskgate --chmod=0640 deploy/riskgate.toml /etc/riskgate/riskgate.toml
USER riskgate:riskgate
# The store (durable queues, alarm log, history): keep it on a volume, or a
# container restart loses every reading not yet delivered.
VOLUME ["/var/lib/riskgate"]
# The operator page and API (its [http] listen must be 0.0.0.0:8080 in a container).
EXPOSE 8080
ENTRYPOINT ["/usr/bin/riskgate"]
CMD ["run", "--config", "/etc/riskgate/riskgate.toml"]
