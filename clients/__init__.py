"""Clients: the wire protocol shared by server and SDK, the Python SDK and the web pages."""
