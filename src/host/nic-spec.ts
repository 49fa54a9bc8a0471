/**
 * xl's vif spec (xl-network-configuration(5)): `key=value` pairs separated by commas, what
 * `network-attach` and a config's `vif = [...]` take. Pure; src/host/nic.ts attaches what it gives.
 */
import { parseMac } from "../drivers/net/netif-keys.ts";

/** A parsed vif spec: what xl network-attach takes. */
export interface NicSpec {
  /** `00:16:3e:…`; libxl makes one up (Xen's OUI, three random bytes) when absent. */
  mac?: string;
  /** xenlab has no bridges: `none` gives the vif no uplink; anything else a passt of its own. */
  bridge?: string;
  ip?: string;
  script?: string;
  vifname?: string;
  rate?: string;
  mtu?: number;
  /** `vif` (the default) or `vif_ioemu`; xenlab serves vif only. */
  type?: string;
  model?: string;
  devid?: number;
}

const KEYS = ["mac", "bridge", "ip", "script", "vifname", "rate", "mtu", "type", "model", "devid", "backend"];

/** xl's vif spec: `key=value` pairs separated by commas (one string, or several). */
export function parseNicSpec(parts: readonly string[]): NicSpec {
  const spec: NicSpec = {};
  for (const item of parts.flatMap((p) => p.split(","))) {
    const t = item.trim();
    if (t === "") continue;
    const eq = t.indexOf("=");
    if (eq < 0)
      throw new RangeError(`Invalid vif option '${t}': expected key=value (e.g. mac=00:16:3e:00:00:01)`);
    const key = t.slice(0, eq).trim();
    const value = t.slice(eq + 1).trim();
    switch (key) {
      case "mac":
        if (parseMac(value) === undefined) throw new RangeError(`Invalid mac address: ${value}`);
        spec.mac = value.toLowerCase();
        break;
      case "mtu":
      case "devid": {
        if (!/^\d+$/.test(value)) throw new RangeError(`Invalid ${key} '${value}': expected a number`);
        spec[key] = Number(value);
        break;
      }
      case "backend":
        if (value !== "0" && value !== "Domain-0") {
          throw new RangeError(`Invalid backend '${value}': xenlab's backends run in dom0 only`);
        }
        break;
      case "type":
        if (value !== "vif")
          throw new RangeError(`Invalid type '${value}': xenlab serves PV vifs only (type=vif)`);
        spec.type = value;
        break;
      case "bridge":
      case "ip":
      case "script":
      case "vifname":
      case "rate":
      case "model":
        spec[key] = value;
        break;
      default:
        throw new RangeError(`Unknown vif option '${key}' (xenlab knows ${KEYS.join(", ")})`);
    }
  }
  return spec;
}
