# Broken on purpose: the image runs as root. Expected to fail exactly user::runs_as_spec_user.
ARG FROM
FROM ${FROM}
USER 0
