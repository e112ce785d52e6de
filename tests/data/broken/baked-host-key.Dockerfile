# Broken on purpose: an SSH host key baked into a layer (every container of the image would
# share it). sshd uses it instead of making one at first start. Expected to fail exactly
# image::no_host_keys.
ARG FROM
FROM ${FROM}
RUN ssh-keygen -q -t ed25519 -N '' -C '' -f /var/lib/tfimg/ssh/ssh_host_ed25519_key
