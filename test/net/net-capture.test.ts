/**
 * netback's captures (`xenlab up --pcap DIR`): a vif's frames land in DIR/vif<domid>.<handle>.pcapng,
 * the guest's UDP datagram to the host's loopback as inbound (from the guest) and the echo as
 * outbound (to it), with the DHCP exchange before them.
 */
import assert from "node:assert/strict";
import { createSocket } from "node:dgram";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { attachNic, detachNic } from "../../src/host/nic.ts";
import { Opt } from "../../src/lib/pcapng.ts";
import { startHost } from "../helpers/host.ts";
import { readCapture } from "../helpers/pcapng-read.ts";
import { hasCommand, requirePeer, tempDir } from "../helpers/peers.ts";
import { until } from "../helpers/until.ts";

describe("netback's vif capture", () => {
  it("writes the guest's frames and the answers to the vif's pcapng, with their directions", async (t) => {
    if (!requirePeer(t, "passt (Debian package passt)", hasCommand("passt"))) return;
    const pcap = join(tempDir("xenlab-net-capture-"), "pcap");
    const udp = createSocket("udp4");
    udp.on("message", (m, r) => udp.send(m, r.port, r.address));
    await new Promise<void>((r) => udp.bind(0, "127.0.0.1", () => r()));
    const fx = await startHost({ pcapDir: pcap, guest: { name: "cap", maxPages: 1024 } });
    try {
      const { host, domU } = fx;
      await attachNic(host, domU, { mac: "00:16:3e:0c:0a:01" });
      await until(
        "a DHCP lease",
        async () =>
          ((await host.hv.call(domU, "inet", "ifaces", undefined)) as { addr: string | null }[])[0]?.addr !=
          null,
      );
      const port = udp.address().port;
      const out = await host.hv.call(domU, "inet", "sh", {
        line: `nc -u -w 3 gateway ${port} captured-datagram`,
      });
      assert.equal(out, "captured-datagram\n");
      await detachNic(host, domU, "0");
      const cap = readCapture(new Uint8Array(readFileSync(join(pcap, `vif${domU}.0.pcapng`))));
      const frames = cap.packets.map((p) => ({
        text: Buffer.from(p.data).toString("latin1"),
        dir: (p.options.find((o) => o.code === Opt.EPB_FLAGS)?.value[0] ?? 0) & 3,
      }));
      const udpFrames = frames.filter((f) => f.text.includes("captured-datagram"));
      assert.deepEqual(
        udpFrames.map((f) => f.dir),
        [1, 2],
        "the datagram from the guest (inbound), the echo to it (outbound)",
      );
    } finally {
      await fx.stop();
      udp.close();
    }
  });
});
