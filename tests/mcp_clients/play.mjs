// Plays an MCP server with the official TypeScript SDK, as a program using it would.
//
//   node play.mjs <v1|v2> <mode> <url> <tool> <arguments JSON> <calls> [end]
//
// mode: "default" (the SDK's own), or for v2 "auto", "legacy" or "modern" (pinned 2026-07-28).
// Lists the tools, calls <tool> <calls> times, reads the prompt "task" and the description
// resource, and ends the session (DELETE) when "end" is given. Prints one JSON line:
// {"tools": [...], "results": [structuredContent | {"error": text}], "sessionId": ...,
//  "prompt": text, "resource": text}; failures print {"failure": message} and exit 1.
import { Client as ClientV2, StreamableHTTPClientTransport as TransportV2 } from '@modelcontextprotocol/client';
import { Client as ClientV1 } from 'mcp-sdk-v1/client/index.js';
import { StreamableHTTPClientTransport as TransportV1 } from 'mcp-sdk-v1/client/streamableHttp.js';

const [sdk, mode, url, tool, argumentsJson, calls, end] = process.argv.slice(2);
const info = { name: 'astra-test-client', version: '1.0.0' };

function makeClient() {
    if (sdk === 'v1') {
        return [new ClientV1(info), new TransportV1(new URL(url))];
    }
    const negotiation = { auto: { mode: 'auto' }, legacy: { mode: 'legacy' }, modern: { mode: { pin: '2026-07-28' } } };
    const options = mode === 'default' ? {} : { versionNegotiation: negotiation[mode] };
    return [new ClientV2(info, options), new TransportV2(new URL(url))];
}

const [client, transport] = makeClient();
try {
    await client.connect(transport);
    const listed = await client.listTools();
    const results = [];
    for (let i = 0; i < Number(calls); i++) {
        const result = await client.callTool({ name: tool, arguments: JSON.parse(argumentsJson) });
        results.push(result.isError ? { error: result.content[0].text } : result.structuredContent);
    }
    const prompt = await client.getPrompt({ name: 'task' });
    const resources = await client.listResources();
    const read = await client.readResource({ uri: resources.resources[0].uri });
    const sessionId = transport.sessionId ?? null;
    if (end === 'end') {
        await transport.terminateSession();
    }
    await client.close();
    console.log(
        JSON.stringify({
            tools: listed.tools.map(t => t.name),
            results,
            sessionId,
            prompt: prompt.messages[0].content.text,
            resource: read.contents[0].text
        })
    );
} catch (error) {
    console.log(JSON.stringify({ failure: String(error && error.message ? error.message : error) }));
    process.exit(1);
}
