"""The MCP server (``switchboard mcp``): tools over the daemon API, push over channels."""
