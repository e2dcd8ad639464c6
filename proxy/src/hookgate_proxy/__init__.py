"""hookgate-proxy: an OpenAI-compatible LLM gateway whose loggers are hookgate plugins.

Run it with `hookgate serve`; build the ASGI application in Python with
`hookgate_proxy.app.create_app`.
"""

__version__ = "0.1.0"
