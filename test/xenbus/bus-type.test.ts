/**
 * The two bus records (Linux's `struct xen_bus_type` for the frontend and backend buses) and the
 * device paths the toolstack builds from them.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { BACKEND_BUS, FRONTEND_BUS, XENBUS_TYPES } from "../../src/xenbus/bus-type.ts";
import { devicePaths, errorPath } from "../../src/xenbus/xenbus.ts";

describe("bus records", () => {
  it("put frontends at device/<type>/<devid>, their other end in backend-id and backend", () => {
    assert.equal(FRONTEND_BUS.root, "device");
    assert.equal(FRONTEND_BUS.levels, 2);
    assert.equal(FRONTEND_BUS.nodename("vbd", 3, 51712), "device/vbd/51712");
    assert.deepEqual([FRONTEND_BUS.otherendIdKey, FRONTEND_BUS.otherendKey], ["backend-id", "backend"]);
  });

  it("put backends at backend/<type>/<frontend domid>/<devid>, their other end in frontend-id and frontend", () => {
    assert.equal(BACKEND_BUS.root, "backend");
    assert.equal(BACKEND_BUS.levels, 3);
    assert.equal(BACKEND_BUS.nodename("vbd", 3, 51712), "backend/vbd/3/51712");
    assert.deepEqual([BACKEND_BUS.otherendIdKey, BACKEND_BUS.otherendKey], ["frontend-id", "frontend"]);
  });

  it("name as many path components as levels says", () => {
    for (const bus of Object.values(XENBUS_TYPES)) {
      assert.equal(bus.nodename("t", 1, 0).split("/").length, 1 + bus.levels);
      assert.ok(bus.nodename("t", 1, 0).startsWith(`${bus.root}/`));
    }
  });
});

describe("devicePaths()", () => {
  it("gives libxl's frontend and backend directories", () => {
    assert.deepEqual(devicePaths("vbd", 3, 51712), {
      frontend: "/local/domain/3/device/vbd/51712",
      backend: "/local/domain/0/backend/vbd/3/51712",
    });
    assert.equal(devicePaths("vif", 3, 0, 5).backend, "/local/domain/5/backend/vif/3/0");
  });
});

describe("errorPath()", () => {
  it("is error/<nodename>/error, relative to the reporting domain's home", () => {
    assert.equal(errorPath("backend/vbd/3/51712"), "error/backend/vbd/3/51712/error");
  });
});
