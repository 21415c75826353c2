# syntax=docker/dockerfile:1
# irqtrace-operator (controller, ingest, status aggregator). Build from the repository root:
#   docker build -f images/operator.Dockerfile -t irqtrace/operator:0.1.0 .
# Runs as the distroless nonroot user (65532), read-only root filesystem, no capabilities.
ARG NODE_IMAGE=docker.io/library/node:20-bookworm-slim
ARG RUNTIME_IMAGE=gcr.io/distroless/nodejs20-debian12:nonroot

FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json tsconfig.base.json ./
COPY proto/package.json proto/
COPY agent/package.json agent/
COPY operator/package.json operator/
RUN npm ci --no-audit --no-fund --ignore-scripts
COPY proto/ proto/
# The kernel side's bounds and defaults (proto/build.mjs derives LIMITS from the uapi header).
COPY kmod/include/uapi/ kmod/include/uapi/
COPY agent/ agent/
COPY operator/ operator/
RUN npm run build -w @irqtrace/proto && npm run build -w @irqtrace/operator \
 && npm ci --no-audit --no-fund --ignore-scripts --omit=dev -w @irqtrace/operator -w @irqtrace/proto

FROM ${RUNTIME_IMAGE}
WORKDIR /opt/irqtrace
COPY --from=build /src/node_modules node_modules/
COPY --from=build /src/package.json ./
COPY --from=build /src/proto/package.json proto/
COPY --from=build /src/proto/dist proto/dist/
COPY --from=build /src/operator/package.json operator/
COPY --from=build /src/operator/dist operator/dist/
USER 65532:65532
ENTRYPOINT ["/nodejs/bin/node", "/opt/irqtrace/operator/dist/main.js"]
CMD ["run", "--config", "/etc/irqtrace/operator.yaml"]
