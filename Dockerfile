# syntax=docker/dockerfile:1
#
# One image for every tgfed component: `tgfed agent`, `tgfed hub`, `tgfed worker` and the admin
# CLI. The Helm charts in deploy/helm rely on what this file sets up:
#   - /app/dist/hub/cli/tgfed.js is the entrypoint (`args: [hub, --config, ...]`);
#   - /app/dist/bundle/tgfed-agent.mjs is the agent as one bundled file (less memory, see
#     scripts/bundle.mjs); the agent chart runs it with `node` as its command;
#   - the process runs as uid/gid 1000 (the base image's `node` user), numeric so that
#     `runAsNonRoot` can verify it;
#   - nothing is written below /app: the charts mount the root filesystem read-only and give the
#     process an emptyDir at /tmp.
# Ports (set by the config files the charts render, defaults of the components): agent gRPC 7443
# and admin gRPC 7444 on the hub; health, readiness and /metrics on 8081 (agent, hub) and 8082
# (worker).

ARG NODE_IMAGE=node:24-bookworm
ARG RUNTIME_IMAGE=node:24-bookworm-slim

# Compiles TypeScript to dist/ and bundles the agent. The generated protocol code is checked in
# (shared/generated), so no protobuf tool runs here.
FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY scripts ./scripts
COPY agent ./agent
COPY hub ./hub
COPY shared ./shared
RUN npm run build

# Production dependencies only, installed from the same lock file.
FROM ${NODE_IMAGE} AS production-deps
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund

FROM ${RUNTIME_IMAGE}
ENV NODE_ENV=production
WORKDIR /app
# package.json: "type": "module" for dist/, and the version `tgfed --version` reports.
COPY --from=production-deps /src/package.json ./package.json
COPY --from=production-deps /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
RUN ln -s /app/dist/hub/cli/tgfed.js /usr/local/bin/tgfed \
  && chmod 0755 /app/dist/hub/cli/tgfed.js
USER 1000:1000
EXPOSE 7443 7444 8081 8082
ENTRYPOINT ["node", "/app/dist/hub/cli/tgfed.js"]
CMD ["--help"]
