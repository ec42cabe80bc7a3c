// A Server-Sent Events parser over a fetch() response body, after the WHATWG "event stream" rules:
// lines end in CRLF, LF or CR; "field: value" (one leading space dropped); a blank line dispatches;
// lines starting with ":" are comments (the server's keep-alives); an id holding NUL is ignored.

export async function* readEvents(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let event = blank();
  let lastId = null;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return; // an event not closed by a blank line is dropped, as the spec says
      buffer += value;
      let start = 0;
      for (;;) {
        const end = lineEnd(buffer, start);
        if (end === null) break;
        const line = buffer.slice(start, end.at);
        start = end.next;
        if (line === "") {
          if (event.data.length) {
            yield { id: lastId, event: event.type || "message", data: event.data.join("\n") };
          }
          event = blank();
          continue;
        }
        if (line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let text = colon < 0 ? "" : line.slice(colon + 1);
        if (text.startsWith(" ")) text = text.slice(1);
        if (field === "data") event.data.push(text);
        else if (field === "event") event.type = text;
        else if (field === "id" && !text.includes("\0")) lastId = text;
      }
      buffer = buffer.slice(start);
    }
  } finally {
    reader.releaseLock();
  }
}

function blank() {
  return { type: "", data: [] };
}

// Where the line starting at `start` ends, or null when the buffer may not hold all of it yet
// (no terminator, or a CR that may be the first half of a CRLF split across two chunks).
function lineEnd(buffer, start) {
  for (let i = start; i < buffer.length; i++) {
    const c = buffer[i];
    if (c === "\n") return { at: i, next: i + 1 };
    if (c === "\r") {
      if (i + 1 === buffer.length) return null;
      return { at: i, next: buffer[i + 1] === "\n" ? i + 2 : i + 1 };
    }
  }
  return null;
}
