// A small real SMTP receiver for the browser journeys: basis delivers its mail here
// (--smtp-url smtp://127.0.0.1:<port>) and the journeys read it from a directory.
//
// It speaks enough ESMTP for lettre to deliver (EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP,
// QUIT; no STARTTLS, no AUTH, so none is offered), and writes each message to
// <dir>/<n>.json as {"to": [...], "data": "<raw message>"} (written under a temporary
// name, then renamed, so a reader never sees half a message). Once it listens it prints
// one line, "listening on 127.0.0.1:<port>", which scripts/browser-test reads.
//
// Usage: node smtp-sink.js <mail-dir>

import { renameSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";

const dir = process.argv[2];
if (!dir) {
  console.error("usage: node smtp-sink.js <mail-dir>");
  process.exit(2);
}

let delivered = 0;

function deliver(to, data) {
  delivered += 1;
  const name = String(delivered).padStart(4, "0");
  const temporary = join(dir, `.${name}.tmp`);
  writeFileSync(temporary, JSON.stringify({ to, data }));
  renameSync(temporary, join(dir, `${name}.json`));
}

const server = createServer((socket) => {
  socket.setEncoding("utf8");
  let buffered = "";
  let to = [];
  let data = null; // the lines of the message while DATA is being received
  const reply = (line) => socket.write(`${line}\r\n`);
  reply("220 basis-journey-sink ESMTP ready");
  socket.on("data", (chunk) => {
    buffered += chunk;
    let end;
    while ((end = buffered.indexOf("\r\n")) >= 0) {
      const line = buffered.slice(0, end);
      buffered = buffered.slice(end + 2);
      if (data !== null) {
        if (line === ".") {
          deliver(to, data.join("\r\n"));
          data = null;
          to = [];
          reply("250 queued");
        } else {
          // Dot-stuffing (RFC 5321 4.5.2): a leading dot was doubled by the client.
          data.push(line.startsWith("..") ? line.slice(1) : line);
        }
        continue;
      }
      const verb = line.slice(0, 4).toUpperCase();
      if (verb === "EHLO") {
        reply("250-basis-journey-sink");
        reply("250 8BITMIME");
      } else if (verb === "HELO" || verb === "NOOP") {
        reply("250 ok");
      } else if (verb === "MAIL") {
        to = [];
        reply("250 ok");
      } else if (verb === "RCPT") {
        const address = /<([^>]*)>/.exec(line);
        to.push(address ? address[1] : line.slice(8).trim());
        reply("250 ok");
      } else if (verb === "DATA") {
        data = [];
        reply("354 end with <CRLF>.<CRLF>");
      } else if (verb === "RSET") {
        to = [];
        reply("250 ok");
      } else if (verb === "QUIT") {
        reply("221 bye");
        socket.end();
      } else {
        reply("502 not implemented");
      }
    }
  });
  socket.on("error", () => socket.destroy());
});

server.listen(0, "127.0.0.1", () => {
  console.log(`listening on 127.0.0.1:${server.address().port}`);
});
// A client may keep its connection open for more mail: stop without waiting for it.
for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => process.exit(0));
}
