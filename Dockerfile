# hookline: one image holding the three binaries (hookline-ingest, hookline-worker, hookline).
# Compose and Kubernetes pick the binary with `command`. Migrations are compiled into the binaries.
#
#   docker build -t hookline .
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY crates crates
COPY migrations migrations
# No debug info in the image (the workspace keeps line tables for profiling): ~9 MB binaries.
RUN CARGO_PROFILE_RELEASE_DEBUG=false CARGO_PROFILE_RELEASE_STRIP=true \
    cargo build --release --locked -p hookline-ingest -p hookline-worker -p hookline-cli \
 && mkdir /out \
 && cp target/release/hookline-ingest target/release/hookline-worker target/release/hookline /out/

# Distroless: glibc and CA certificates, no shell, runs as an unprivileged user.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/ /usr/local/bin/
USER nonroot
ENV HOOKLINE_LOG_FORMAT=json
EXPOSE 8080 9101
ENTRYPOINT []
CMD ["hookline-ingest"]
