"""A stdio MCP server for the pydantic-ai MCP tests: one tool, ``order_status``, that appends
each call to the file named by its first argument, so a test can count them."""

from __future__ import annotations

import sys

from mcp.server.mcpserver import MCPServer

server = MCPServer("orders")


@server.tool()
def order_status(n: int) -> str:
    """The shipping status of an order."""
    with open(sys.argv[1], "a") as out:
        out.write(f"{n}\n")
    return f"order {n} shipped yesterday"


if __name__ == "__main__":
    server.run()
