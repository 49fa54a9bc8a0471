/**
 * A floor for `bench xenstore` case (b): the least a Node.js daemon can do per request. It frames
 * XenStore packets on a Unix socket and answers each with a plausible reply of the same type
 * ("OK", a value, or transaction id 7), with no store, no permissions, no watches: the event
 * loop, the socket's read and write, and the framing, nothing else. It cannot pass test-xenstore,
 * so run it on case (b) only, without the warm-up run:
 *
 *   npm run build
 *   node dist/cli/main.js bench xenstore --cases b --no-warmup-run \
 *     --xenlab-cmd 'node bench/floor-xenstored.mjs {socket}'
 *
 * If this floor does not beat C xenstored, no daemon in Node's event loop can (README, Speed).
 */
import { rmSync } from "node:fs";
import { createServer } from "node:net";

const path = process.argv[2];
if (path === undefined) throw new Error("usage: node bench/floor-xenstored.mjs SOCKET");
rmSync(path, { force: true });

const XS_READ = 2;
const XS_TRANSACTION_START = 6;
const OK = Buffer.from("OK\0");
const VALUE = Buffer.from("value");
const TX_ID = Buffer.from("7\0");

const server = createServer((socket) => {
  socket.setNoDelay(true);
  let pending = Buffer.alloc(0);
  socket.on("data", (chunk) => {
    const buf = pending.length > 0 ? Buffer.concat([pending, chunk]) : chunk;
    const out = [];
    let pos = 0;
    while (buf.length - pos >= 16) {
      const len = buf.readUInt32LE(pos + 12);
      if (buf.length - pos < 16 + len) break;
      const type = buf.readUInt32LE(pos);
      const body = type === XS_READ ? VALUE : type === XS_TRANSACTION_START ? TX_ID : OK;
      const header = Buffer.allocUnsafe(16);
      header.writeUInt32LE(type, 0);
      header.writeUInt32LE(buf.readUInt32LE(pos + 4), 4);
      header.writeUInt32LE(buf.readUInt32LE(pos + 8), 8);
      header.writeUInt32LE(body.length, 12);
      out.push(header, body);
      pos += 16 + len;
    }
    pending = buf.subarray(pos);
    if (out.length > 0) socket.write(Buffer.concat(out));
  });
  socket.on("error", () => {});
});
server.listen(path, () => process.stdout.write(`floor-xenstored: listening on ${path}\n`));
process.on("SIGTERM", () => {
  server.close();
  process.exit(0);
});
