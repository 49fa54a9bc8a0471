/** Frames and ring entries the netif tests build by hand. */
import { NETIF_TX_ENTRY_SIZE, writeTxRequest } from "../../src/drivers/net/netif.ts";

/** An ARP who-has `target` from `mac` (sender address 0.0.0.0, as a probe), as hex. */
export function arpRequest(mac: string, target: readonly number[]): string {
  const m = mac.split(":").join("");
  return (
    `ffffffffffff${m}0806000108000604` + `0001${m}00000000000000000000${Buffer.from(target).toString("hex")}`
  );
}

/** True for an ARP reply (hex). */
export function isArpReply(hex: string): boolean {
  return hex.slice(24, 28) === "0806" && hex.slice(40, 44) === "0002";
}

/** A raw TX ring entry (hex). */
export function txreq(gref: number, offset: number, flags: number, id: number, size: number): string {
  const b = new Uint8Array(NETIF_TX_ENTRY_SIZE);
  writeTxRequest(new DataView(b.buffer), gref, offset, flags, id, size);
  return Buffer.from(b).toString("hex");
}

/** A raw extra-info slot in a TX entry (hex): type, flags, the rest zero. */
export function txextra(type: number, flags: number): string {
  const b = new Uint8Array(NETIF_TX_ENTRY_SIZE);
  b[0] = type;
  b[1] = flags;
  return Buffer.from(b).toString("hex");
}
