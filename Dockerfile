# The NATS Manager's image. The build stage bundles the manager with esbuild (production code only:
# no node_modules, no TypeScript, no local plane) and gathers the Node 24 binary with the shared
# libraries ldd lists for it; the final image is those files on scratch, the same files
# `npm run build:image` packs without a container engine (src/localplane/manager-image.ts).
# It runs as 65532 with no shell, no package manager and nothing writable but /tmp, so it works
# with readOnlyRootFilesystem (the Deployment mounts an emptyDir at /tmp).
FROM node:24.21.0-bookworm-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends binutils && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY package.json package-lock.json ./
# Scripts off: the pinned `node` package would fetch a second Node; this stage has one.
RUN npm ci --ignore-scripts
COPY src ./src
COPY webhooks ./webhooks
COPY certs ./certs
COPY deploy/webhooks ./deploy/webhooks
RUN node src/localplane/build-manager-image.ts --rootfs /rootfs

FROM scratch
COPY --from=build /rootfs/ /
USER 65532:65532
ENV NODE_ENV=production PATH=/usr/local/bin:/usr/bin:/bin MALLOC_ARENA_MAX=2
WORKDIR /app
ENTRYPOINT ["/usr/local/bin/node", "--max-semi-space-size=1", "--no-maglev", "--v8-pool-size=1", "/app/src/manager/main.mjs"]
