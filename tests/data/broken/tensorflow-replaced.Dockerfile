# Broken on purpose: a private requirement "replaced" TensorFlow. A real replacement downloads
# ~500 MB, so this rewrites the installed distribution's metadata to another version, which is
# what `pip list` and importlib.metadata then report. Expected to fail exactly
# python::protected_packages_unchanged.
ARG FROM
FROM ${FROM}
USER 0
RUN set -eu; \
    d=$(python3 -c 'import importlib.metadata as m; print(m.distribution("tensorflow")._path)'); \
    sed -i 's/^Version: .*/Version: 2.11.0/' "$d/METADATA"; \
    mv "$d" "$(dirname "$d")/tensorflow-2.11.0.dist-info"
USER 1000:1000
