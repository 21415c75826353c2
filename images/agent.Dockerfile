# syntax=docker/dockerfile:1
# The irqtrace node agent: the `irqtrace` command (TypeScript on Node.js 20),
# the eBPF loader, and the kernel module's source with what it takes to build
# it against the node's headers (mounted from the host at /lib/modules and
# /usr/src by the DaemonSet). Build from the repository root:
#   docker build -f images/agent.Dockerfile -t irqtrace/agent:0.1.0 .
# It runs as root: loading a module or BPF programs needs capabilities that a
# non-root process can only hold as ambient ones, and the operator grants the
# container exactly the capabilities (or, for the module, the privilege) it needs.
ARG NODE_IMAGE=docker.io/library/node:20-bookworm-slim

FROM ${NODE_IMAGE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends clang llvm bpftool libbpf-dev libelf-dev zlib1g-dev gcc make libc6-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY package.json package-lock.json tsconfig.base.json ./
COPY proto/package.json proto/
COPY agent/package.json agent/
COPY operator/package.json operator/
RUN npm ci --no-audit --no-fund --ignore-scripts
COPY proto/ proto/
COPY agent/ agent/
COPY kmod/ kmod/
RUN npm run build -w @irqtrace/proto && npm run build -w @irqtrace/agent \
 && mkdir -p /out && make -C kmod/bpf OUT=/out \
 && npm ci --no-audit --no-fund --ignore-scripts --omit=dev -w @irqtrace/agent -w @irqtrace/proto

FROM ${NODE_IMAGE}
# kmod: insmod/rmmod; gcc, make: building irqtrace.ko against the node's headers (whose prebuilt objtool
# needs libelf1); libbpf: the loader. What a module build never uses goes: the sanitizer and LTO parts of
# gcc, binutils' other linkers and profilers, static C libraries, documentation, locales. A node imports every byte.
RUN apt-get update \
 && apt-get install -y --no-install-recommends kmod gcc make libc6-dev libelf1 libbpf1 zlib1g bc \
 && apt-get clean && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/debconf/*-old /var/log/* \
 && rm -rf /usr/share/doc /usr/share/man /usr/share/info /usr/share/locale /usr/share/lintian /usr/lib/x86_64-linux-gnu/gprofng \
 && rm -f /usr/lib/x86_64-linux-gnu/lib*san.so* /usr/lib/gcc/x86_64-linux-gnu/12/lto1 /usr/lib/gcc/x86_64-linux-gnu/12/lto-wrapper \
    /usr/lib/gcc/x86_64-linux-gnu/12/lib*san*.so /usr/lib/gcc/x86_64-linux-gnu/12/lib*san*.a /usr/bin/*lto-dump* \
    /usr/bin/*gp-* /usr/bin/gprofng /usr/lib/x86_64-linux-gnu/libgprofng* \
    /usr/bin/*ld.gold /usr/bin/*dwp /usr/lib/x86_64-linux-gnu/libc.a /usr/lib/x86_64-linux-gnu/libm-2.36.a /usr/lib/x86_64-linux-gnu/libmvec.a
WORKDIR /opt/irqtrace
COPY --from=build /src/node_modules node_modules/
COPY --from=build /src/package.json ./
COPY --from=build /src/proto/package.json proto/
COPY --from=build /src/proto/dist proto/dist/
COPY --from=build /src/agent/package.json agent/
COPY --from=build /src/agent/dist agent/dist/
COPY --from=build /out/irqtrace-bpf /usr/lib/irqtrace/irqtrace-bpf
COPY kmod/ /usr/lib/irqtrace/kmod/
ENV IRQTRACE_BPF_LOADER=/usr/lib/irqtrace/irqtrace-bpf
# The command on PATH, for `kubectl exec <agent pod> -- irqtrace record` (it reads the running agent's events).
RUN printf '#!/bin/sh\nexec node --max-semi-space-size=2 --max-old-space-size=192 /opt/irqtrace/agent/dist/cli/main.js "$@"\n' > /usr/local/bin/irqtrace \
 && chmod 755 /usr/local/bin/irqtrace
ENTRYPOINT ["node", "--max-semi-space-size=2", "--max-old-space-size=192", "/opt/irqtrace/agent/dist/cli/main.js"]
CMD ["agent"]
