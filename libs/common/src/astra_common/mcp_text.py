"""A tool result as the text a model reads, the same in every service that calls MCP tools.

The text content blocks are the model-facing form: the MCP specification asks a server that
returns structured content to return it serialized as JSON in a text block too, and envhost
does. A server that skips that would otherwise hand the model an empty tool message for a
call that returned data, so the structured content stands in, as JSON, when no block is text.
Other blocks (images, audio, resources) have no text form here and are left out.
"""

from __future__ import annotations

import json

from mcp_types import CallToolResult, TextContent


def tool_result_text(result: CallToolResult) -> str:
    """The text blocks of ``result`` joined by newlines; the structured content as JSON when
    there is no text block; "" when there is neither."""
    texts = [block.text for block in result.content if isinstance(block, TextContent)]
    if texts:
        return "\n".join(texts)
    if result.structured_content is not None:
        return json.dumps(result.structured_content, ensure_ascii=False)
    return ""
