# Broken on purpose: Jupyter answers the API without authentication (a login handler that
# lets anonymous users in, while the password still works). Expected to fail exactly
# jupyter::api_refuses_unauthenticated.
ARG FROM
FROM ${FROM}
USER 0
RUN printf '%s\n' \
      'from jupyter_server.auth.login import LoginHandler as _LoginHandler' \
      'class _OpenLogin(_LoginHandler):' \
      '    @classmethod' \
      '    def get_user(cls, handler):' \
      '        return super().get_user(handler) or "anonymous"' \
      'c.ServerApp.login_handler_class = _OpenLogin' \
      >> /etc/jupyter/jupyter_server_config.py
USER 1000:1000
