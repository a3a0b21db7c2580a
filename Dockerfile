# syntax=docker/dockerfile:1
# tidemark's container image: `tidemark serve` on Node 24 with the host tools its node
# service runs (NBD, FUSE, loop devices, mkfs, mount, resize, modprobe). Runs as root.
#
#   docker build -t ghcr.io/tidemark/tidemark:0.1.0 .
#
# What goes in is listed once, in hack/image.list; the last two stages run
# hack/build-image.sh, which also builds the same image without Docker as an OCI archive
# (bash hack/build-image.sh). Keep ENTRYPOINT and ENV below equal to the list's entrypoint
# and env lines (a chart test compares them).
ARG DEBIAN_RELEASE=bookworm

# 1. Compile the TypeScript and stage the application: dist/, production node_modules and the
#    Node binary of the `node` npm package that package-lock.json pins.
FROM node:24-${DEBIAN_RELEASE}-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY . .
RUN npm run build && bash hack/build-image.sh stage-app /app

# 2. The root filesystem: the Debian packages of hack/image.list with their dependencies,
#    extracted (no package manager, no build tools), and the staged application.
FROM debian:${DEBIAN_RELEASE}-slim AS rootfs
RUN apt-get update -qq
COPY hack/build-image.sh hack/image.list /src/hack/
COPY --from=build /app /app
RUN bash /src/hack/build-image.sh rootfs /rootfs --app /app

# 3. Nothing else.
FROM scratch
COPY --from=rootfs /rootfs /
ENV PATH=/opt/tidemark/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
WORKDIR /
USER 0:0
ENTRYPOINT ["/opt/tidemark/bin/tidemark"]
