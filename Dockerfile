# task-executor image: the Node service, its task-shim, and nsenter for sidecar mode.
# Build: docker build -t task-executor .
FROM node:20-bookworm-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY package.json package-lock.json ./
COPY scripts ./scripts
COPY src/runtime/shim ./src/runtime/shim
RUN npm ci --no-audit --no-fund
COPY . .
RUN npm run build && npm prune --omit=dev

FROM node:20-bookworm-slim
# util-linux: nsenter (sidecar mode); procps: ps for people debugging a pod.
RUN apt-get update && apt-get install -y --no-install-recommends util-linux procps tini && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY --from=build /src/package.json ./
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY --from=build /src/build/task-shim ./build/task-shim
COPY --from=build /src/gen ./gen
COPY --from=build /src/proto ./proto
ENV DATA_DIR=/var/lib/sandbox/tasks LISTEN_ADDR=0.0.0.0:5758
EXPOSE 5758 9090
# tini reaps the task-shims the executor leaves behind when it restarts in place.
ENTRYPOINT ["/usr/bin/tini", "--", "node", "/app/dist/src/main.js"]
