# syntax=docker/dockerfile:1
# The `sim` image that the scale-out examples in deploy/ run (k8s, Slurm, CI): the `sim` binary
# on PATH and the shipped scenarios at /servocell/scenarios, /servocell the working directory.
# Build it from the repository root (the workspace is the build context):
#   docker build -t ghcr.io/servocell/sim:0.1.0 .
# README.md, "Sweeps that outgrow one machine", says how to push it.

# The toolchain servocell is built and tested with (the developers' machines and CI: rustc
# 1.95.0 on Debian 12 "bookworm"). The workspace's rust-version is a floor, not what CI runs.
ARG RUST_VERSION=1.95.0
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS build
WORKDIR /build
# The whole workspace: cargo resolves every member's manifest even when it builds one package.
# .dockerignore keeps target/ and other local files out of the context.
COPY . .
# The registry and target caches persist between builds (BuildKit); the binary is copied out
# of the cached target directory, since a cache mount is not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/build/target \
    cargo build --release --locked -p sim \
    && install -D -m 0755 target/release/sim /out/sim

# The same Debian release as the build stage, so the binary finds the glibc it was linked
# against; `sim` needs nothing else (libc, libm, libgcc_s).
FROM debian:${DEBIAN_RELEASE}-slim AS runtime
ARG RUST_VERSION
LABEL org.opencontainers.image.title="servocell sim" \
      org.opencontainers.image.description="servocell's deterministic simulation harness: sim sweep, merge, shrink, run" \
      org.opencontainers.image.source="https://github.com/servocell/servocell" \
      org.opencontainers.image.licenses="MIT OR Apache-2.0" \
      dev.servocell.rust-version="${RUST_VERSION}"
COPY --from=build /out/sim /usr/local/bin/sim
COPY scenarios/ /servocell/scenarios/
# Not root: a sweep needs no privilege. uid and gid 10001, which deploy/k8s names in its
# securityContext so that the pods may write to the shared results volume. /servocell itself
# is writable, so that `sim sweep` with its default `--out sweep-out` works in a bare
# `docker run` (mount a volume there, or give `--out` a mounted path, to keep the files).
RUN groupadd --gid 10001 sim \
    && useradd --uid 10001 --gid sim --no-create-home --shell /usr/sbin/nologin sim \
    && chown sim:sim /servocell
USER 10001:10001
WORKDIR /servocell
ENTRYPOINT ["sim"]
CMD ["--help"]
