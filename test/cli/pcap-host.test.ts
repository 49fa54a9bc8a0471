/**
 * The host's captures in process (Host.start with `pcapDir`): the XenStore capture runs from
 * before dom0's first request to the host's stop, the directory is published for netback, and a
 * directory that cannot be used fails the start with its reason and leaves nothing running.
 */
import assert from "node:assert/strict";
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import pino from "pino";
import { PCAP_DIR_KEY } from "../../src/drivers/net/vif-capture.ts";
import { XENSTORE_CAPTURE_FILE } from "../../src/host/capture.ts";
import { Host } from "../../src/host/host.ts";
import { CAPTURE_HEADER_SIZE } from "../../src/xenstore/capture.ts";
import { decodeHeader, typeName } from "../../src/xenstore/wire.ts";
import { startHost } from "../helpers/host.ts";
import { readCapture } from "../helpers/pcapng-read.ts";
import { tempDir } from "../helpers/peers.ts";

describe("Host.start({ pcapDir })", () => {
  it("captures from the publishing of the directory to the host's stop, the guest's introduction included; an earlier run's vif captures are removed", async () => {
    const pcap = join(tempDir("xenlab-pcap-host-"), "pcap");
    // An earlier run's files: its vif captures go (netback appends to them), the rest stays.
    mkdirSync(pcap);
    writeFileSync(join(pcap, "vif7.0.pcapng"), "old");
    writeFileSync(join(pcap, "notes.txt"), "mine");
    const fx = await startHost({ pcapDir: pcap, guest: { name: "g" } });
    assert.deepEqual(readdirSync(pcap).sort(), ["notes.txt", XENSTORE_CAPTURE_FILE]);
    assert.equal(await fx.host.xs.read(PCAP_DIR_KEY), pcap);
    await fx.host.xs.write("/last", "1");
    await fx.stop();
    const c = readCapture(readFileSync(join(pcap, XENSTORE_CAPTURE_FILE)));
    const ops = c.packets.map((p) => {
      const h = decodeHeader(p.data, CAPTURE_HEADER_SIZE);
      const payload = new TextDecoder().decode(p.data.subarray(CAPTURE_HEADER_SIZE + 16));
      return `${p.data[1]} ${typeName(h.type)} ${payload}`;
    });
    assert.equal(ops[0], `0 WRITE ${PCAP_DIR_KEY}\0${pcap}`);
    assert.ok(
      ops.some((o) => o.startsWith("0 INTRODUCE 1\0")),
      "the guest's INTRODUCE",
    );
    assert.ok(ops.includes("0 WRITE /last\u00001"), "a request just before the stop");
  });

  it("fails with the directory's reason when it is a file, and stops what it started", async () => {
    const file = join(tempDir("xenlab-pcap-host-"), "file");
    writeFileSync(file, "");
    await assert.rejects(
      Host.start({ log: pino({ level: "silent" }), pcapDir: file }),
      /Cannot capture into '.*file': not a directory/,
    );
  });
});
