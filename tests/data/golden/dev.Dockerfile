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
# static copy, apt's logs and dpkg's backup files stay out of the layer)
# The CA bundle of a TLS proxy is a BuildKit secret: it is never in a layer.
# hadolint ignore=DL3008
RUN --mount=type=secret,id=ca_bundle,required=false \
    set -eu; \
    opts=(); \
    if [ -s /run/secrets/ca_bundle ]; then opts=(-o Acquire::https::CAInfo=/run/secrets/ca_bundle); fi; \
    apt-get "${opts[@]}" update; \
    DEBIAN_FRONTEND=noninteractive apt-get "${opts[@]}" install -y --no-install-recommends \
      -o DPkg::Options::=--path-exclude=/usr/bin/tini-static \
      ca-certificates \
      git \
      make \
      tini; \
    apt-get clean; \
    rm -rf /var/lib/apt/lists/* /var/log/apt/* /var/log/dpkg.log /var/lib/dpkg/*-old

# --- python: private requirements, installed into the base's system Python
# protect_base: the base's distributions matching python.protected are pinned by
# constraints taken from the base itself, so nothing replaces NVIDIA's builds.
COPY python/ /opt/tfimg/python/
RUN --mount=type=secret,id=ca_bundle,required=false \
    /opt/tfimg/python/pip-install.sh

# --- user: ml (1000:1000), not root, no sudo
RUN set -eu; \
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
    chmod 0700 /var/lib/tfimg/ssh

# --- small config files, least to most often changed
COPY entrypoint.sh /usr/local/bin/tfimg-entrypoint

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
