# Rendered by tfimg from dev.yaml: do not edit, edit the variant.
# variant: dev    spec hash: sha256:1405a6deee1766e08f938d903dafaa296d4fd738d1cdab1d1727a3b01124fec4
# Layers go from the least to the most often changed: apt, Python
# requirements, user, then small config files, so that changing a key, a
# password hash or a label rebuilds only the last layers.
ARG TFIMG_BASE=nvcr.io/nvidia/tensorflow:22.07-tf2-py3
FROM ${TFIMG_BASE}

USER 0
SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# --- apt: system packages (tini is the init that forwards signals; its unused
# static copy stays out of the layer). Packages are downloaded outside apt's
# cache (a base's own cache is left as it is); apt's and dpkg's logs and caches,
# which hold the time of the build, are emptied (when the base has them) or
# removed.
# The CA bundle of a TLS proxy is a BuildKit secret: it is never in a layer.
# hadolint ignore=DL3008
RUN --mount=type=secret,id=ca_bundle,required=false \
    set -eu; \
    export SOURCE_DATE_EPOCH=315532800; t0=$(date +%s); \
    tfimg_settle() { \
      set --; while read -r _ _ _ _ mp _; do [ "$mp" = / ] || set -- "$@" -path "$mp" -prune -o; done </proc/self/mountinfo; \
      find / -xdev "$@" -newermt "@$((t0 - 1))" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +; \
      while read -r _ _ _ _ mp _; do case "$mp" in /proc*|/sys*|/dev*|/) continue;; esac; d=${mp%/*}; while [ -n "$d" ]; do touch -h -d "@$SOURCE_DATE_EPOCH" "$d" 2>/dev/null || true; d=${d%/*}; done; done </proc/self/mountinfo; \
    }; \
    noisy="/var/log/dpkg.log /var/log/alternatives.log /var/log/apt/history.log /var/log/apt/term.log \
      /var/log/apt/eipp.log.xz /var/cache/ldconfig/aux-cache /var/cache/apt/pkgcache.bin /var/cache/apt/srcpkgcache.bin \
      /var/cache/debconf/config.dat-old /var/cache/debconf/templates.dat-old"; \
    had=" $(for f in $noisy; do if [ -e "$f" ]; then printf '%s ' "$f"; fi; done)"; \
    mkdir -p /tmp/tfimg-apt/partial; \
    opts=(-o Dir::Cache::Archives=/tmp/tfimg-apt); \
    if [ -s /run/secrets/ca_bundle ]; then opts+=(-o Acquire::https::CAInfo=/run/secrets/ca_bundle); fi; \
    apt-get "${opts[@]}" update; \
    DEBIAN_FRONTEND=noninteractive apt-get "${opts[@]}" install -y --no-install-recommends \
      -o DPkg::Options::=--path-exclude=/usr/bin/tini-static \
      ca-certificates \
      git \
      make \
      tini; \
    rm -rf /tmp/tfimg-apt /var/lib/apt/lists/*; \
    for f in $noisy; do \
      case "$had" in *" $f "*) : > "$f" ;; *) rm -f "$f" ;; esac; \
    done; \
    tfimg_settle

# --- python: private requirements, installed into the base's system Python
# protect_base: the base's distributions matching python.protected are pinned by
# constraints taken from the base itself, so nothing replaces NVIDIA's builds.
# pip writes hash-based .pyc (SOURCE_DATE_EPOCH) with a fixed hash seed (the order of
# set constants); pip's own imports write none.
RUN --mount=type=bind,source=python,target=/run/tfimg/python \
    --mount=type=secret,id=ca_bundle,required=false \
    set -eu; \
    export SOURCE_DATE_EPOCH=315532800; t0=$(date +%s); \
    tfimg_settle() { \
      set --; while read -r _ _ _ _ mp _; do [ "$mp" = / ] || set -- "$@" -path "$mp" -prune -o; done </proc/self/mountinfo; \
      find / -xdev "$@" -newermt "@$((t0 - 1))" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +; \
      while read -r _ _ _ _ mp _; do case "$mp" in /proc*|/sys*|/dev*|/) continue;; esac; d=${mp%/*}; while [ -n "$d" ]; do touch -h -d "@$SOURCE_DATE_EPOCH" "$d" 2>/dev/null || true; d=${d%/*}; done; done </proc/self/mountinfo; \
    }; \
    mkdir -p /opt/tfimg; \
    cp -R /run/tfimg/python /opt/tfimg/python; \
    chown -R 0:0 /opt/tfimg/python; \
    PYTHONDONTWRITEBYTECODE=1 PYTHONHASHSEED=0 /opt/tfimg/python/pip-install.sh; \
    tfimg_settle

# --- user: ml (1000:1000), not root, no sudo
RUN set -eu; \
    export SOURCE_DATE_EPOCH=315532800; t0=$(date +%s); \
    tfimg_settle() { \
      set --; while read -r _ _ _ _ mp _; do [ "$mp" = / ] || set -- "$@" -path "$mp" -prune -o; done </proc/self/mountinfo; \
      find / -xdev "$@" -newermt "@$((t0 - 1))" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +; \
      while read -r _ _ _ _ mp _; do case "$mp" in /proc*|/sys*|/dev*|/) continue;; esac; d=${mp%/*}; while [ -n "$d" ]; do touch -h -d "@$SOURCE_DATE_EPOCH" "$d" 2>/dev/null || true; d=${d%/*}; done; done </proc/self/mountinfo; \
    }; \
    taken=$( { getent passwd 1000 ml || true; getent group 1000 ml || true; } \
             | cut -d: -f1,3 | sort -u | tr '\n' ' '); \
    if [ -n "$taken" ]; then \
      echo "TFIMG-ERROR: the base image already has the user or group (name:id) ${taken% }; set user.name, user.uid and user.gid to ones it does not use" >&2; \
      exit 1; \
    fi; \
    groupadd --gid 1000 ml; \
    useradd --no-log-init --uid 1000 --gid 1000 --create-home --home-dir /home/ml --shell /bin/bash ml; \
    passwd --lock ml >/dev/null; \
    mkdir -p /workspace /etc/tfimg /var/lib/tfimg/ssh; \
    chown 1000:1000 /workspace /var/lib/tfimg/ssh; \
    chmod 0700 /var/lib/tfimg/ssh; \
    tfimg_settle

# --- small config files (the last layers: a new key or password hash rebuilds only these):
# the entrypoint
# Copied from bind mounts of the context (not COPY) so that their files and folders get the
# layer time too.
RUN --mount=type=bind,source=entrypoint.sh,target=/run/tfimg/entrypoint.sh \
    set -eu; \
    export SOURCE_DATE_EPOCH=315532800; t0=$(date +%s); \
    tfimg_settle() { \
      set --; while read -r _ _ _ _ mp _; do [ "$mp" = / ] || set -- "$@" -path "$mp" -prune -o; done </proc/self/mountinfo; \
      find / -xdev "$@" -newermt "@$((t0 - 1))" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +; \
      while read -r _ _ _ _ mp _; do case "$mp" in /proc*|/sys*|/dev*|/) continue;; esac; d=${mp%/*}; while [ -n "$d" ]; do touch -h -d "@$SOURCE_DATE_EPOCH" "$d" 2>/dev/null || true; d=${d%/*}; done; done </proc/self/mountinfo; \
    }; \
    install -o 0 -g 0 -m 0755 /run/tfimg/entrypoint.sh /usr/local/bin/tfimg-entrypoint; \
    tfimg_settle

ENV CUDA_VISIBLE_DEVICES="" \
    PYTHONUNBUFFERED="1" \
    TFIMG_VARIANT="dev" \
    TF_CPP_MIN_LOG_LEVEL="1"
USER 1000:1000
WORKDIR /workspace
ENTRYPOINT ["/usr/bin/tini", "-g", "--", "/usr/local/bin/tfimg-entrypoint"]
CMD ["tfimg-services"]

# --- labels (OCI annotations); created, revision and the base digest come from the build
ARG TFIMG_BASE
ARG TFIMG_CREATED=unknown
ARG TFIMG_REVISION=unknown
ARG TFIMG_BASE_DIGEST=unknown
LABEL io.tfimg.profile="ngc-22.07" \
      io.tfimg.spec-hash="sha256:1405a6deee1766e08f938d903dafaa296d4fd738d1cdab1d1727a3b01124fec4" \
      io.tfimg.user="ml:1000:1000" \
      io.tfimg.variant="dev" \
      org.opencontainers.image.base.digest="${TFIMG_BASE_DIGEST}" \
      org.opencontainers.image.base.name="${TFIMG_BASE}" \
      org.opencontainers.image.created="${TFIMG_CREATED}" \
      org.opencontainers.image.description="Minimal CPU-only development image" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.revision="${TFIMG_REVISION}" \
      org.opencontainers.image.source="" \
      org.opencontainers.image.title="dev" \
      org.opencontainers.image.vendor="Example ML Platform"
