# task-executor image: the compiled service (dist/), its task-shim, and nsenter for sidecar mode.
# Build: docker build -t task-executor:0.1.0 .   (the tag deploy/kubernetes/ uses)
#
# Node 26 is the active LTS (Node 20 reached end of life in April 2026). .ci/lts-node reads the
# major version from this line, so CI runs the test suite on the Node the image ships.
# trixie (Debian 13) is Debian's stable release; bookworm only has LTS security support since June 2026.
ARG NODE_IMAGE=node:26-trixie-slim

FROM ${NODE_IMAGE} AS build
# libcap-ng-dev, libseccomp-dev: least privilege for tasks (capabilities, the default seccomp profile);
# task-shim links their shared libraries, task-privs (the sidecar helper) their static ones.
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev libcap-ng-dev libseccomp-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Dependencies first, so a source change does not reinstall them. `npm ci` runs the package's
# `postinstall` script, which builds the shim: it needs the build script and the shim's source.
COPY package.json package-lock.json ./
COPY scripts ./scripts
COPY src/runtime/shim ./src/runtime/shim
RUN npm ci --no-audit --no-fund
COPY . .
# build = the shim (build/task-shim) + tsc into dist/ (dist/src and dist/gen); then drop devDependencies.
RUN npm run build && npm prune --omit=dev --no-audit --no-fund

FROM ${NODE_IMAGE}
# util-linux: nsenter (sidecar mode; 2.41 here, --wdns needs 2.38); procps: ps for people
# debugging a pod; tini: PID 1, see ENTRYPOINT; git and ca-certificates: git:: artifact sources.
# libcap-ng0, libseccomp2: the shared libraries task-shim was linked with.
RUN apt-get update && apt-get install -y --no-install-recommends util-linux procps tini git ca-certificates libcap-ng0 libseccomp2 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
# What the service reads at run time, and nothing else (no src/, no proto/, no gen/*.ts):
# - package.json: marks the package root, from which the files below are found (src/util/package-root.ts);
# - node_modules: production dependencies only (pruned above; all pure JavaScript);
# - dist/: the compiled service and generated code;
# - gen/*.binpb: the descriptor sets served by server reflection and read by the REST adapter;
# - build/task-shim: the per-task supervisor, compiled in the build stage against this image's libc;
COPY --from=build /src/package.json ./
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY --from=build /src/gen/*.binpb ./gen/
COPY --from=build /src/build/task-shim ./build/task-shim
# - build/task-privs: the statically linked helper that drops a sidecar task's privileges after nsenter.
COPY --from=build /src/build/task-privs ./build/task-privs
ENV DATA_DIR=/var/lib/sandbox/tasks LISTEN_ADDR=0.0.0.0:5758
EXPOSE 5758 9090
# tini reaps the task-shims the executor leaves behind when it restarts in place.
ENTRYPOINT ["/usr/bin/tini", "--", "node", "/app/dist/src/main.js"]
