/**
 * The per-vif capture netback calls (src/drivers/net/vif-capture.ts), fed synthetic frames: the
 * file's name and interface, each frame's bytes and direction, the copy taken of the caller's
 * buffer, openVifCapture's reading of /tool/xenlab/pcap, and Debian's tshark reading the file as
 * Ethernet (ARP, IPv4/UDP) with the directions netback gave.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import {
  openVifCapture,
  PCAP_DIR_KEY,
  VifCapture,
  vifCaptureFile,
} from "../../src/drivers/net/vif-capture.ts";
import { Opt } from "../../src/lib/pcapng.ts";
import { XsClient } from "../../src/xenstore/client.ts";
import { XenStoreCore } from "../../src/xenstore/core.ts";
import { LocalChannel } from "../../src/xenstore/transport-local.ts";
import { optText, readCapture, readSections } from "../helpers/pcapng-read.ts";
import { hasCommand, requirePeer, tempDir } from "../helpers/peers.ts";

const GUEST_MAC = [0x00, 0x16, 0x3e, 0x12, 0x34, 0x56];
const GATEWAY_MAC = [0x02, 0xfc, 0x00, 0x00, 0x00, 0x01];

/** An ARP who-has 10.0.2.2 tell 10.0.2.15, from the guest: 42 bytes. */
function arpRequest(): Uint8Array {
  return Uint8Array.from([
    ...[0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
    ...GUEST_MAC,
    ...[0x08, 0x06], // ARP
    ...[0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01], // Ethernet/IPv4, request
    ...GUEST_MAC,
    ...[10, 0, 2, 15],
    ...[0, 0, 0, 0, 0, 0],
    ...[10, 0, 2, 2],
  ]);
}

/** An IPv4/UDP datagram from 10.0.2.2:53 to the guest's 10.0.2.15:4000 carrying `payload`. */
function udpToGuest(payload: string): Uint8Array {
  const data = new TextEncoder().encode(payload);
  const udpLen = 8 + data.length;
  const ipLen = 20 + udpLen;
  const ip = [0x45, 0, ipLen >> 8, ipLen & 0xff, 0, 1, 0, 0, 64, 17, 0, 0, 10, 0, 2, 2, 10, 0, 2, 15];
  let sum = 0;
  for (let i = 0; i < 20; i += 2) sum += (ip[i]! << 8) | ip[i + 1]!;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >> 16);
  const ck = ~sum & 0xffff;
  ip[10] = ck >> 8;
  ip[11] = ck & 0xff;
  return Uint8Array.from([
    ...GUEST_MAC,
    ...GATEWAY_MAC,
    ...[0x08, 0x00],
    ...ip,
    ...[0, 53, 4000 >> 8, 4000 & 0xff, udpLen >> 8, udpLen & 0xff, 0, 0],
    ...data,
  ]);
}

describe("VifCapture", () => {
  it("writes vif<domid>.<handle>.pcapng: one Ethernet interface named as Linux's vif, each frame and its direction", () => {
    const dir = tempDir("xenlab-vifcap-");
    let t = 5_000_000;
    const cap = VifCapture.create(dir, 3, 1, { now: () => t++ });
    const arp = arpRequest();
    const udp = udpToGuest("hello");
    cap.onFrame("from-guest", arp);
    cap.onFrame("to-guest", udp);
    arp.fill(0); // the caller reuses its buffer: the capture kept a copy
    cap.close();
    const file = vifCaptureFile(dir, 3, 1);
    assert.equal(file, join(dir, "vif3.1.pcapng"));
    const c = readCapture(readFileSync(file));
    assert.equal(c.interfaces.length, 1);
    assert.equal(c.interfaces[0]!.linkType, 1);
    assert.equal(optText(c.interfaces[0]!.options, Opt.IF_NAME), "vif3.1");
    assert.deepEqual(
      c.packets.map((p) => [
        [...p.data],
        p.timestampUs,
        new DataView(p.options[0]!.value.buffer).getUint32(0, true),
      ]),
      [
        [[...arpRequest()], 5_000_000n, 1],
        [[...udp], 5_000_001n, 2],
      ],
    );
    assert.equal(cap.frames, 2);
  });

  it("adds a section to the vif's file when the vif reconnects: the frames of both connections are kept", (t) => {
    const dir = tempDir("xenlab-vifcap-");
    const first = VifCapture.create(dir, 4, 0);
    first.onFrame("from-guest", arpRequest());
    first.close();
    const second = VifCapture.create(dir, 4, 0);
    second.onFrame("to-guest", udpToGuest("again"));
    second.onFrame("from-guest", arpRequest());
    second.close();
    const sections = readSections(readFileSync(vifCaptureFile(dir, 4, 0)));
    assert.deepEqual(
      sections.map((s) => s.packets.length),
      [1, 2],
    );
    if (!requirePeer(t, "tshark (Debian package tshark)", hasCommand("tshark"))) return;
    const out = execFileSync(
      "tshark",
      ["-r", vifCaptureFile(dir, 4, 0), "-T", "fields", "-e", "frame.interface_name"],
      {
        encoding: "utf8",
        stdio: ["ignore", "pipe", "ignore"],
      },
    );
    assert.deepEqual(out.trim().split("\n"), ["vif4.0", "vif4.0", "vif4.0"]);
  });

  it("is read by tshark as Ethernet: ARP from the guest inbound, UDP to it outbound", (t) => {
    if (!requirePeer(t, "tshark (Debian package tshark)", hasCommand("tshark"))) return;
    const dir = tempDir("xenlab-vifcap-");
    const cap = VifCapture.create(dir, 1, 0);
    cap.onFrame("from-guest", arpRequest());
    cap.onFrame("to-guest", udpToGuest("hello"));
    cap.close();
    const out = execFileSync(
      "tshark",
      ["-r", vifCaptureFile(dir, 1, 0), "-T", "fields", "-E", "separator=|"]
        .concat(["-e", "frame.interface_name", "-e", "frame.packet_flags_direction", "-e", "eth.src"])
        .concat(["-e", "arp.dst.proto_ipv4", "-e", "udp.dstport", "-e", "udp.length"]),
      { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] },
    );
    assert.deepEqual(out.trim().split("\n"), [
      "vif1.0|0x00000001|00:16:3e:12:34:56|10.0.2.2||",
      "vif1.0|0x00000002|02:fc:00:00:00:01||4000|13",
    ]);
  });
});

describe("openVifCapture()", () => {
  it("is null while the host captures nothing, and a capture into the directory at /tool/xenlab/pcap once it does", async () => {
    const xs = new XsClient(new LocalChannel(new XenStoreCore()));
    assert.equal(await openVifCapture(xs, 2, 0), null);
    const dir = tempDir("xenlab-vifcap-");
    await xs.write(PCAP_DIR_KEY, dir);
    const tap = await openVifCapture(xs, 2, 0);
    assert.ok(tap !== null);
    tap.onFrame("from-guest", arpRequest());
    tap.close();
    assert.ok(existsSync(join(dir, "vif2.0.pcapng")));
    assert.equal(readCapture(readFileSync(join(dir, "vif2.0.pcapng"))).packets.length, 1);
    await xs.close();
  });
});
