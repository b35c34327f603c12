# syntax=docker/dockerfile:1
# switchboard's container image: built with the Rust image, run on distroless (glibc, no shell,
# no package manager) as a non-root user. Not built in this project's CI, which has no Docker
# engine: docs/operations.md says what is checked instead.
#
#   docker build --build-arg SWITCHBOARD_GIT_REV=$(git rev-parse --short HEAD) -t switchboard .
#   docker run -p 8080:8080/tcp -p 8080:8080/udp switchboard --media-announce PUBLIC_IP
#
# The build stage: the toolchain the project is tested with, on the same Debian release as the
# runtime image (glibc 2.36).
FROM rust:1.95-bookworm AS build
WORKDIR /src
# The image's --version names this revision (the build context has no .git).
ARG SWITCHBOARD_GIT_REV=unknown
ENV SWITCHBOARD_GIT_REV=${SWITCHBOARD_GIT_REV}
COPY . .
RUN packaging/build-release.sh /out

# The runtime stage: the binary and the example config, nothing else.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/switchboard /usr/local/bin/switchboard
COPY packaging/switchboard.toml /etc/switchboard/switchboard.toml
# One media worker: further workers take ephemeral UDP ports, which `-p 8080:8080/udp` does
# not publish. With `--network host`, raise it; or give the workers a fixed range to publish,
# e.g. SWITCHBOARD_MEDIA_WORKERS=4 SWITCHBOARD_MEDIA_PORTS=40000-40003 and
# `-p 40000-40003:40000-40003/udp` (docs/media.md, "Workers").
ENV SWITCHBOARD_CONFIG=/etc/switchboard/switchboard.toml \
    SWITCHBOARD_LOG_FORMAT=json \
    SWITCHBOARD_MEDIA_WORKERS=1
# distroless's nonroot user (65532).
USER nonroot:nonroot
# Signaling (HTTP/WebSocket) on TCP, media (the SFU) on UDP, on the same port number.
EXPOSE 8080/tcp 8080/udp
# No curl in distroless: the binary asks /readyz itself (503 while draining).
HEALTHCHECK --interval=10s --timeout=6s --start-period=5s --retries=3 \
  CMD ["/usr/local/bin/switchboard", "healthcheck", "http://127.0.0.1:8080/readyz"]
# SIGTERM drains: sockets close with 1001 within --shutdown-grace (docker stop waits 10 s).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/switchboard"]
# Arguments given to `docker run IMAGE ...` replace these (the default listens there too).
CMD ["--listen", "0.0.0.0:8080"]
