"""Local, faithful stand-ins for the external systems the app talks to.

Each sandbox is an ASGI app with its own state, reached by the app over real HTTP with the
production clients (only base URLs differ). The sandboxes import nothing of the app itself:
they must behave like the real systems, not like our idea of them.
"""
