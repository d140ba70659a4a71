"""`engram serve`: REST API, MCP server and web page over one `Memory`.

from engram.server.app import create_app
from engram.server.keys import KeyStore
"""

from __future__ import annotations
