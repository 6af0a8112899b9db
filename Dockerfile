# syntax=docker/dockerfile:1
# Build stage: compile the release binary.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock clippy.toml ./
COPY migrations ./migrations
COPY src ./src
RUN cargo build --release --locked && strip target/release/snapgate

# Runtime stage: a small Debian with CA certificates, running as a non-root user.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/snapgate --create-home snapgate
COPY --from=build /src/target/release/snapgate /usr/local/bin/snapgate
USER snapgate
WORKDIR /var/lib/snapgate
ENV SNAPGATE_SERVER__LISTEN=0.0.0.0:8080 \
    SNAPGATE_STORE__URL=sqlite:///var/lib/snapgate/data/snapgate.db
EXPOSE 8080
VOLUME ["/var/lib/snapgate/data"]
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1
ENTRYPOINT ["snapgate"]
CMD ["serve"]
