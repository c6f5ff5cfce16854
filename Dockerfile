# syntax=docker/dockerfile:1
#
# Container image of kong-audit-shipper: the same binary serves as the Lambda
# function (package_type = "Image") and as the CLI.
#
#   docker buildx build --platform linux/arm64 -t kong-audit-shipper .   # Graviton Lambda
#   docker buildx build --platform linux/amd64 -t kong-audit-shipper .   # x86_64 Lambda
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
# Images are pinned by tag here. Deployers should pin them by digest as well
# (FROM image:tag@sha256:...) in their own build; the digests could not be
# looked up where this file was written.

############################ build ############################################
FROM rust:1.95-slim-bookworm AS build

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /build
ENV CARGO_TERM_COLOR=never \
    CARGO_INCREMENTAL=0

# 1. Dependencies only, against placeholder sources: this layer is rebuilt only
#    when Cargo.toml or Cargo.lock change. (If Cargo.toml ever gains a build.rs
#    or explicit [[test]]/[[bench]]/[[example]] targets, copy those paths here.)
COPY Cargo.toml Cargo.lock ./
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    mkdir src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && cargo build --release --locked --bin kong-audit-shipper \
    && rm -rf src \
        target/release/kong-audit-shipper \
        target/release/.fingerprint/kong-audit-shipper-* \
        target/release/deps/kong_audit_shipper-* \
        target/release/deps/libkong_audit_shipper-*

# 2. The crate itself.
COPY src ./src
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    cargo build --release --locked --bin kong-audit-shipper

# 3. Lambda's al2023 runtime has glibc 2.34 and this stage is Debian bookworm
#    (glibc 2.36): fail the build, rather than the first invocation, if the
#    binary needs a newer glibc symbol than the runtime has.
RUN newest="$(objdump -T target/release/kong-audit-shipper | grep -o 'GLIBC_[0-9.]*' | sed 's/^GLIBC_//' | sort -uV | tail -n 1)" \
    && echo "newest glibc symbol version required: ${newest:-none}" \
    && if [ -n "${newest}" ] && [ "$(printf '%s\n2.34\n' "${newest}" | sort -V | tail -n 1)" != "2.34" ]; then \
         echo "binary needs glibc ${newest} > 2.34 (Amazon Linux 2023)" >&2; exit 1; \
       fi

############################ runtime ##########################################
FROM public.ecr.aws/lambda/provided:al2023

# Lambda runs ENTRYPOINT with no arguments and AWS_LAMBDA_RUNTIME_API set, so
# the binary starts its Lambda handler; a subcommand given as `docker run`
# arguments reaches the binary unchanged and runs the CLI. The base image's
# /lambda-entrypoint.sh is not used on purpose: it takes one argument as the
# handler name and starts bootstrap without it, so `run`/`check` would never
# reach the CLI.
COPY --from=build /build/target/release/kong-audit-shipper /var/runtime/bootstrap

# Without Redis settings the CLI keeps its dedup state in an embedded file
# under $XDG_STATE_HOME: keep it on a volume so it outlives the container,
#   docker run --rm -v kas-state:/state kong-audit-shipper backfill ...
# (The Lambda function always uses Redis; its file system is read-only.)
ENV XDG_STATE_HOME=/state
RUN mkdir -p /state && chown 10001:10001 /state

# Lambda ignores USER (it runs the function as its own unprivileged user);
# `docker run` uses this numeric, non-root one. The binary is root-owned and
# world-executable.
USER 10001:10001

# A one-shot job / Lambda function: there is no long-running service to probe.
HEALTHCHECK NONE

ENTRYPOINT ["/var/runtime/bootstrap"]
