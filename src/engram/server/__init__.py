"""`engram serve`: REST API, MCP server and web page over one `Memory`.

from engram.server.app import create_app
from engram.store.keys import open_keys
"""

from __future__ import annotations
