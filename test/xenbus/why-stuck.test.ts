/**
 * whyStuck(): the line `xenlab devices` prints under each device, from the two ends' states,
 * keys, error nodes and drivers. The worked examples of src/xenbus/why-stuck.ts, and the rest of
 * the handshake's stops.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { type DeviceEnd, stateText, whyStuck } from "../../src/xenbus/why-stuck.ts";

function end(
  domid: number,
  path: string,
  state: number | undefined,
  more: Partial<DeviceEnd> = {},
): DeviceEnd {
  const keys = new Map<string, string>(more.keys ?? []);
  if (state !== undefined) keys.set("state", String(state));
  return { domid, path, state, hasDriver: true, ...more, keys };
}
const FE = "/local/domain/1/device/alice_dev/0";
const BE = "/local/domain/0/backend/alice_dev/1/0";
const why = (fe: DeviceEnd, be: DeviceEnd, type = "alice_dev") =>
  whyStuck({ type, devid: "0", frontend: fe, backend: be });

describe("whyStuck()", () => {
  const cases: [string, DeviceEnd, DeviceEnd, string][] = [
    [
      "no driver at either end (the seed before insmod)",
      end(1, FE, 1, { hasDriver: false }),
      end(0, BE, 1, { hasDriver: false }),
      "both Initialising: no driver for alice_dev in domain 0 (backend) nor in domain 1 (frontend)",
    ],
    [
      "a backend with no driver",
      end(1, FE, 1),
      end(0, BE, 1, { hasDriver: false }),
      "backend Initialising: no driver for alice_dev in domain 0",
    ],
    [
      "a frontend with no driver while the backend has one",
      end(1, FE, 1, { hasDriver: false }),
      end(0, BE, 1),
      "frontend Initialising: no driver for alice_dev in domain 1",
    ],
    [
      "a frontend with no driver while the backend waits in InitWait",
      end(1, FE, 1, { hasDriver: false }),
      end(0, BE, 2),
      "frontend Initialising: no driver for alice_dev in domain 1",
    ],
    [
      "both drivers, the backend's still Initialising (the seed's probe only logs)",
      end(1, FE, 1),
      end(0, BE, 1),
      "backend Initialising: domain 0's alice_dev driver has not gone to InitWait (see its dmesg)",
    ],
    [
      "the backend in InitWait, the frontend has published nothing",
      end(1, FE, 1),
      end(0, BE, 2),
      "backend InitWait: waits for the frontend's ring-ref and event-channel (frontend Initialising)",
    ],
    [
      "the backend in InitWait, the frontend has written its ring-ref only",
      end(1, FE, 1, { keys: new Map([["ring-ref", "8"]]) }),
      end(0, BE, 2),
      "backend InitWait: waits for the frontend's ring-ref and event-channel (frontend Initialising; it wrote ring-ref)",
    ],
    [
      "the frontend Initialised, the backend has not connected",
      end(1, FE, 3, {
        keys: new Map([
          ["ring-ref", "8"],
          ["event-channel", "3"],
        ]),
      }),
      end(0, BE, 2),
      "backend InitWait: the frontend is Initialised (event-channel = 3, ring-ref = 8); waits for domain 0 to map the ring and bind the port",
    ],
    [
      "the backend Connected, the frontend not yet",
      end(1, FE, 3),
      end(0, BE, 4),
      "frontend Initialised: the backend is Connected; waits for domain 1 to see it and connect",
    ],
    ["both Connected", end(1, FE, 4), end(0, BE, 4), "connected"],
    [
      "a frontend that failed: its error node is the answer",
      end(1, "/local/domain/1/device/vbd/51712", 5, {
        error: { path: "error/device/vbd/51712/error", value: "ENOSPC allocating ring" },
      }),
      end(0, "/local/domain/0/backend/vbd/1/51712", 4),
      "frontend Closing: error/device/vbd/51712/error = ENOSPC allocating ring",
    ],
    [
      "a frontend closing while the backend is Connected",
      end(1, FE, 5),
      end(0, BE, 4),
      "frontend Closing: waits for the backend to close (backend Connected)",
    ],
    [
      "both closing",
      end(1, FE, 6),
      end(0, BE, 5),
      "frontend Closed: waits for the backend to reach Closed (backend Closing)",
    ],
    ["both Closed", end(1, FE, 6), end(0, BE, 6), "closed: waits for the toolstack to remove the device"],
    [
      "a frontend directory without its state key",
      end(1, FE, undefined),
      end(0, BE, 2),
      `frontend missing: domain 1 has no ${FE}/state`,
    ],
  ];
  for (const [what, fe, be, line] of cases) {
    it(`says why: ${what}`, () => assert.equal(why(fe, be), line));
  }

  it("explains the primary console, which has no XenBus handshake", () => {
    const fe = end(1, "/local/domain/1/console", undefined, {
      keys: new Map([
        ["ring-ref", "254"],
        ["port", "2"],
      ]),
    });
    assert.equal(
      why(fe, end(0, "/local/domain/0/backend/console/1/0", 1), "console"),
      "the primary console: no XenBus handshake, xenconsoled serves ring-ref 254, port 2",
    );
  });

  it("names states as xenbus_strstate does, with their numbers", () => {
    assert.equal(stateText(2), "InitWait (2)");
    assert.equal(stateText(undefined), "missing");
  });
});
