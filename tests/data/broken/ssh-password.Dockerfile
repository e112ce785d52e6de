# Broken on purpose: sshd_config turns password authentication on. Expected to fail exactly
# ssh::sshd_config_keys_only (AuthenticationMethods publickey still refuses passwords at login).
ARG FROM
FROM ${FROM}
USER 0
RUN sed -i 's/^PasswordAuthentication no$/PasswordAuthentication yes/' /etc/tfimg/ssh/sshd_config \
 && grep -q '^PasswordAuthentication yes$' /etc/tfimg/ssh/sshd_config
USER 1000:1000
