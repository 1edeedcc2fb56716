# syntax=docker/dockerfile:1
# The `meridian` binary in a small non-root image:
#   docker build -t meridian:0.1.0 .
# The runtime image has glibc and libgcc only (distroless/cc): the binary links nothing else
# (SQLite is bundled, TLS is rustls).

# The toolchain the workspace is built and tested with (Cargo.toml's rust-version is the
# minimum); override with --build-arg RUST_VERSION=...
ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
# --locked: exactly the dependencies in Cargo.lock. The caches only speed up rebuilds.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p meridian-cli --bin meridian \
    && cp target/release/meridian /usr/local/bin/meridian

# Same Debian release as the build stage, so the glibc the binary was linked against.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /usr/local/bin/meridian /usr/local/bin/meridian
# Numeric, so that Kubernetes' runAsNonRoot can verify it (the distroless `nonroot` user).
USER 65532:65532
# The dashboard, the API, /metrics, /healthz and /readyz (`--listen`; 7070 is the default port).
EXPOSE 7070
ENTRYPOINT ["/usr/local/bin/meridian"]
CMD ["--help"]
