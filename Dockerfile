# syntax=docker/dockerfile:1
#
# Container image of kong-audit-shipper: the same binary serves as the Lambda
# function (package_type = "Image") and as the CLI.
#
# Build and push for the function's architecture. --provenance=false and
# --sbom=false are required: without them buildx pushes an OCI image index
# (the image plus attestation manifests), which Lambda's CreateFunction and
# UpdateFunctionCode refuse.
#
#   docker buildx build --platform linux/arm64 --provenance=false --sbom=false \
#     -t "$ECR_REPO:0.1.0" --metadata-file build.json --push .   # Graviton Lambda (terraform/ default)
#   docker buildx build --platform linux/amd64 --provenance=false --sbom=false \
#     -t "$ECR_REPO:0.1.0" --metadata-file build.json --push .   # x86_64 Lambda
#
# Deploy it by digest (terraform/ image_uri = "$ECR_REPO@<containerimage.digest of
# build.json>"): Lambda resolves a tag once, and never sees the tag move.
#
# The build stage runs on the builder's own platform ($BUILDPLATFORM) and
# cross-compiles with cargo-lambda and Zig, so an x86 machine builds the arm64
# image natively in minutes rather than under QEMU emulation for hours.
#
#   docker run --rm kong-audit-shipper check        # CLI: reach Kong, Redis, the channel
#   docker run --rm kong-audit-shipper run          # CLI: one cycle
#   docker run --rm kong-audit-shipper backfill --since 2026-01-01T00:00:00Z --dry-run
#
# Local Lambda emulation with the Runtime Interface Emulator of the base image:
#   docker run --rm -p 9000:8080 --entrypoint /usr/local/bin/aws-lambda-rie \
#     kong-audit-shipper /var/runtime/bootstrap
#   curl -d '{}' http://localhost:9000/2015-03-31/functions/function/invocations
#
# Base images are pinned by the digest of their multi-platform index, the tag
# in a comment beside it. Where the digests come from (none could be resolved
# where this file was written, which has no registry access):
#   rust:1.95.0-slim-bookworm  docker-library/repo-info's generated record of
#                              the tag (repos/rust/remote/1.95.0-slim-bookworm.md,
#                              build of 2026-05-08, read in a mirror of that repo)
#   lambda/provided:al2023     the Dependabot-maintained pin of
#                              buildkite/buildkite-agent-metrics (Dockerfile.lambda)
# Refresh either with `docker buildx imagetools inspect <image>:<tag>` (the
# "Digest:" line of the index) and keep the tag comment in step.
#
# Not verified where this file was written (no Docker engine): a build, the
# image's start under Lambda, and that the digests above still resolve.

############################ runtime base #####################################
# public.ecr.aws/lambda/provided:al2023, for the platform being built. Its digest is that of a
# multi-platform index, from which the builder takes the image of the target platform; the build
# stage checks that image's architecture and glibc before the binary is put on it, so a digest that
# names one platform only (or the wrong one) fails the build instead of the first invocation.
FROM public.ecr.aws/lambda/provided:al2023@sha256:dfd5ad325f666d12eed1af8e909a977e3eb1b214bbfc24fc0c1e03a45ecd179c AS runtime-base

############################ build ############################################
# rust:1.95.0-slim-bookworm
FROM --platform=$BUILDPLATFORM rust:1.95.0-slim-bookworm@sha256:b8ecdb97c5b9c1ae058249f72710dbe33d4da19f7b8d911bd3c72e5f048af251 AS build

# The platform being built for (linux/arm64 or linux/amd64), set by buildx.
ARG TARGETARCH
# The same cross-compiling toolchain as scripts/package-lambda and the test command
# (scripts/toolchain.env; scripts/check-deploy checks that these defaults match it).
ARG CARGO_LAMBDA_VERSION=1.9.2
ARG ZIGLANG_VERSION=0.17.1

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /build
ENV CARGO_TERM_COLOR=never \
    CARGO_INCREMENTAL=0 \
    PATH=/opt/lambda-build/bin:$PATH

# cargo-lambda and Zig come from PyPI; Rust's standard library for the target
# from rustup. Debian's python3-venv is taken at the version of the pinned image.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/lambda-build \
    && /opt/lambda-build/bin/pip install --no-cache-dir --disable-pip-version-check \
        "cargo-lambda==${CARGO_LAMBDA_VERSION}" "ziglang==${ZIGLANG_VERSION}" \
    && case "${TARGETARCH}" in \
         arm64) echo aarch64-unknown-linux-gnu > /build/rust-target; echo --arm64 > /build/lambda-flag ;; \
         amd64) echo x86_64-unknown-linux-gnu > /build/rust-target; echo --x86-64 > /build/lambda-flag ;; \
         *) echo "unsupported TARGETARCH '${TARGETARCH}': build for linux/arm64 or linux/amd64" >&2; exit 1 ;; \
       esac \
    && rustup target add "$(cat /build/rust-target)"

# 1. Dependencies only, against placeholder sources: this layer is rebuilt only
#    when Cargo.toml or Cargo.lock change. (If Cargo.toml ever gains a build.rs
#    or explicit [[test]]/[[bench]]/[[example]] targets, copy those paths here.)
COPY Cargo.toml Cargo.lock ./
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    mkdir src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && cargo lambda build --release --locked "$(cat /build/lambda-flag)" --bin kong-audit-shipper \
    && rm -rf src target/lambda \
        target/*/release/kong-audit-shipper \
        target/*/release/.fingerprint/kong-audit-shipper-* \
        target/*/release/deps/kong_audit_shipper-* \
        target/*/release/deps/libkong_audit_shipper-*

# 2. The crate itself.
COPY src ./src
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    cargo lambda build --release --locked "$(cat /build/lambda-flag)" --bin kong-audit-shipper \
    && cp target/lambda/kong-audit-shipper/bootstrap /build/bootstrap \
    && mkdir -p /build/state

# 3. Fail the build, rather than the first invocation, when the binary or the
#    runtime image is for another architecture, or the binary needs a newer
#    glibc than the runtime image's (2.34 on al2023). The runtime's C library is
#    read here, on the builder's platform: readelf reads any architecture's ELF,
#    so nothing of the target platform is run.
COPY --from=runtime-base /usr/lib64/libc.so.6 /build/runtime-libc.so.6
RUN machine_of() { readelf -h "$1" | sed -n 's/^ *Machine: *//p'; } \
    && for elf in /build/bootstrap /build/runtime-libc.so.6; do \
         machine="$(machine_of "${elf}")"; \
         echo "${elf}: ${machine}"; \
         case "${TARGETARCH}:${machine}" in \
           arm64:AArch64|amd64:*X86-64) ;; \
           *) echo "${elf} is for '${machine}', not ${TARGETARCH}: the base image digest does not give a ${TARGETARCH} image, or the build went wrong" >&2; exit 1 ;; \
         esac; \
       done \
    && newest="$(readelf -V --wide /build/bootstrap | sed -n '/\.gnu\.version_r/,$p' | grep -o 'GLIBC_[0-9.]*' | sed 's/^GLIBC_//' | sort -uV | tail -n 1)" \
    && runtime="$(readelf -V --wide /build/runtime-libc.so.6 | sed -n '/\.gnu\.version_d/,/\.gnu\.version_r/p' | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/^GLIBC_//' | sort -uV | tail -n 1)" \
    && echo "newest glibc symbol version required: ${newest:-none}; the runtime image's glibc: ${runtime}" \
    && if [ -z "${runtime}" ]; then echo "no glibc version found in the runtime image's libc.so.6" >&2; exit 1; fi \
    && if [ -n "${newest}" ] && [ "$(printf '%s\n%s\n' "${newest}" "${runtime}" | sort -V | tail -n 1)" != "${runtime}" ]; then \
         echo "binary needs glibc ${newest}, the runtime image has ${runtime}" >&2; exit 1; \
       fi \
    && rm /build/runtime-libc.so.6

############################ runtime ##########################################
# The runtime base checked in step 3.
FROM runtime-base

# Lambda runs ENTRYPOINT with no arguments and AWS_LAMBDA_RUNTIME_API set, so
# the binary starts its Lambda handler; a subcommand given as `docker run`
# arguments reaches the binary unchanged and runs the CLI. The base image's
# /lambda-entrypoint.sh is not used on purpose: it takes one argument as the
# handler name and starts bootstrap without it, so `run`/`check` would never
# reach the CLI.
COPY --from=build /build/bootstrap /var/runtime/bootstrap

# Without Redis settings the CLI keeps its dedup state in an embedded file
# under $XDG_STATE_HOME: keep it on a volume so it outlives the container,
#   docker run --rm -v kas-state:/state kong-audit-shipper backfill ...
# (The Lambda function always uses Redis; its file system is read-only.)
# The directory is copied, not made with RUN: this stage has no RUN at all, so
# building it for another architecture needs no emulation either.
ENV XDG_STATE_HOME=/state
COPY --from=build --chown=10001:10001 /build/state /state

# Lambda ignores USER (it runs the function as its own unprivileged user);
# `docker run` uses this numeric, non-root one. The binary is root-owned and
# world-executable.
USER 10001:10001

# A one-shot job / Lambda function: there is no long-running service to probe.
HEALTHCHECK NONE

ENTRYPOINT ["/var/runtime/bootstrap"]
