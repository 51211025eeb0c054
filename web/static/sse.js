/**
 * A small Server-Sent Events reader over fetch(): EventSource cannot send an Authorization
 * header, and the API wants a bearer token when API_TOKEN is set.
 */

/**
 * Reads `body` to its end, calling `onMessage({id, event, data})` per message. Follows the
 * SSE rules that matter here: CR, LF or CRLF line ends; "data" lines joined with "\n";
 * comment lines (":") ignored; a message without "event" is a "message".
 * @param {ReadableStream<Uint8Array>} body
 * @param {(m: {id: string | null, event: string, data: string}) => void} onMessage
 */
export async function readSse(body, onMessage) {
  const decoder = new TextDecoder();
  const reader = body.getReader();
  let buffer = "";
  let message = blank();
  for (;;) {
    const { value, done } = await reader.read();
    buffer += done ? decoder.decode() : decoder.decode(value, { stream: true });
    // A CR at the very end may be the first half of a CRLF: keep it for the next chunk.
    const held = !done && buffer.endsWith("\r") ? "\r" : "";
    const lines = (held ? buffer.slice(0, -1) : buffer).split(/\r\n|\r|\n/);
    buffer = done ? "" : (lines.pop() ?? "") + held;
    for (const line of lines) {
      if (line === "") {
        if (message.data.length) {
          onMessage({ id: message.id, event: message.event, data: message.data.join("\n") });
        }
        message = blank();
        continue;
      }
      if (line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "data") message.data.push(value);
      else if (field === "event") message.event = value;
      else if (field === "id") message.id = value;
    }
    if (done) return;
  }
}

function blank() {
  return {
    id: /** @type {string | null} */ (null),
    event: "message",
    data: /** @type {string[]} */ ([]),
  };
}
