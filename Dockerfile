# syntax=docker/dockerfile:1
#
# comfyui-agent's container image: the MCP server over Streamable HTTP on port 8765.
#
#   docker build -t comfyui-agent .
#   docker run --rm -p 127.0.0.1:8765:8765 -e COMFYUI_AGENT_TOKEN=$(openssl rand -hex 32) \
#     -e COMFYUI_URL=http://host.docker.internal:8188 comfyui-agent
#
# The server listens on 0.0.0.0 inside the container so that port publishing works, and it
# refuses to start there without COMFYUI_AGENT_TOKEN. See docker-compose.yml for ComfyUI
# and the agent together.

ARG RUST_VERSION=1.95

# ---- build --------------------------------------------------------------------------------
# Bookworm, like the runtime image below, so the binary links the same glibc.
FROM rust:${RUST_VERSION}-slim-bookworm AS builder
WORKDIR /src
# Everything .dockerignore lets through: the manifest, the lock file, src/ and the files it
# embeds (templates/), and the bench, example and test sources the manifest names.
COPY . .
# The caches keep downloaded crates and compiled dependencies between builds (BuildKit).
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --bin comfyui-agent \
    && install -D -m 0755 target/release/comfyui-agent /out/usr/local/bin/comfyui-agent \
    && install -d -m 0750 /out/data

# ---- run ----------------------------------------------------------------------------------
# Distroless: glibc, CA certificates and tzdata, no shell or package manager. The nonroot
# tag runs as uid/gid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot

ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="comfyui-agent" \
      org.opencontainers.image.description="MCP server that gives AI assistants safe, complete command of ComfyUI" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="https://github.com/comfyui-agent/comfyui-agent" \
      org.opencontainers.image.url="https://github.com/comfyui-agent/comfyui-agent" \
      org.opencontainers.image.licenses="MIT OR Apache-2.0" \
      io.modelcontextprotocol.server.name="io.github.comfyui-agent/comfyui-agent"

COPY --from=builder /out/usr/local/bin/comfyui-agent /usr/local/bin/comfyui-agent
# Sessions and other state; mount a volume here to keep them across containers.
COPY --from=builder --chown=65532:65532 /out/data /data

# Listen on every interface of the container (a token is then required) and keep state in
# /data. `healthcheck` reads the same COMFYUI_AGENT_BIND and probes it on 127.0.0.1.
ENV COMFYUI_AGENT_BIND=0.0.0.0:8765 \
    COMFYUI_AGENT_DATA_DIR=/data

USER 65532:65532
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8765

HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/comfyui-agent", "healthcheck"]

ENTRYPOINT ["/usr/local/bin/comfyui-agent"]
CMD ["serve"]
