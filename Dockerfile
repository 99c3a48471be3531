# syntax=docker/dockerfile:1
# The offpath image: one binary (`offpath transport`, `offpath moderator`, `offpath
# topology`), the ONNX Runtime library and the models. Multi-stage: the build stage has the
# Rust toolchain and fetches ONNX Runtime from its PyPI wheel (scripts/bootstrap); the
# runtime stage is Debian slim with a non-root user. Validated offline by hadolint in the
# test suite (tests/containers.rs); not built on the machine this was written on (no
# container runtime there).

FROM rust:1.95-bookworm AS build
# The commit offpath_build_info{commit} reports (services/build_info.rs reads it; the build
# context has no .git). Empty: "unknown". `docker build --build-arg
# OFFPATH_COMMIT=$(git rev-parse --short HEAD) .`, or compose.yaml's OFFPATH_COMMIT.
ARG OFFPATH_COMMIT=""
WORKDIR /src
COPY . .
# bootstrap installs python3-pip when missing and puts libonnxruntime.so in .tools/lib.
RUN scripts/bootstrap \
    && cargo build --release --locked --bin offpath \
    && mkdir -p /out \
    && cp -L .tools/lib/libonnxruntime.so /out/libonnxruntime.so

FROM debian:bookworm-slim
# curl: the health check; ca-certificates: TLS to NATS. Versions float with bookworm's
# security updates, on purpose.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 offpath \
    && useradd --system --uid 10001 --gid 10001 --home-dir /opt/offpath --shell /usr/sbin/nologin offpath
WORKDIR /opt/offpath
COPY --from=build /src/target/release/offpath /usr/local/bin/offpath
COPY --from=build /out/libonnxruntime.so /opt/offpath/lib/libonnxruntime.so
COPY models/ /opt/offpath/models/
ENV ORT_DYLIB_PATH=/opt/offpath/lib/libonnxruntime.so \
    OFFPATH_HEALTH_ADDR=127.0.0.1:9465
# The uid and gid of the `offpath` user made above (numeric: resolvable without
# /etc/passwd). Files mounted into the container must be readable by one of them: a secret
# or the reviewers file 0640, owned by root:10001 on the host (docs/deploy.md).
USER 10001:10001
# 8080: chat (transport); 9465 / 9464: /metrics, /healthz, /readyz (transport / moderator).
EXPOSE 8080 9464 9465
# The role's operator port: set OFFPATH_HEALTH_ADDR=127.0.0.1:9464 for a moderator.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["sh", "-c", "curl -fsS \"http://$OFFPATH_HEALTH_ADDR/readyz\" || exit 1"]
ENTRYPOINT ["offpath"]
CMD ["--help"]
