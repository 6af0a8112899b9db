# syntax=docker/dockerfile:1
# Build stage: compile the release binary.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock clippy.toml ./
COPY migrations ./migrations
COPY src ./src
RUN cargo build --release --locked && strip target/release/snapgate

# Runtime stage: a small Debian with CA certificates, running as a non-root user (uid/gid 10001).
# The data directory is created in the image and owned by that user: Docker initialises a new
# named volume from the image's directory (owner included), so snapgate can create its SQLite
# file there. A bind mount keeps the host directory's owner instead: chown it to 10001 first.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 snapgate \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/snapgate --create-home snapgate \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/snapgate/data
COPY --from=build /src/target/release/snapgate /usr/local/bin/snapgate
USER 10001:10001
WORKDIR /var/lib/snapgate
ENV SNAPGATE_SERVER__LISTEN=0.0.0.0:8080 \
    SNAPGATE_STORE__URL=sqlite:///var/lib/snapgate/data/snapgate.db
EXPOSE 8080
VOLUME ["/var/lib/snapgate/data"]
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1
ENTRYPOINT ["snapgate"]
CMD ["serve"]
