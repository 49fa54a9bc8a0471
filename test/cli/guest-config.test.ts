/**
 * guestConfig() (src/host/guest-config.ts): what xl's parse_config_data makes of the keys xenlab
 * has, with its defaults, its messages and its warnings.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { pathToFileURL } from "node:url";
import { GuestConfigError, guestConfig } from "../../src/host/guest-config.ts";
import { parseXlConfig } from "../../src/host/xl-cfg.ts";

const read = (text: string, file = "guest.cfg", cwd = "/home/u") => {
  const cfg = parseXlConfig(text, file);
  return { guest: guestConfig(cfg, file, cwd), warnings: cfg.warnings };
};
const refused = (text: string, message: string) =>
  assert.throws(
    () => read(text),
    (e: unknown) => e instanceof GuestConfigError && e.message === message,
  );

describe("guestConfig()", () => {
  it("has xl's defaults: one vCPU, destroy / restart / destroy, no disks, no modules", () => {
    const { guest } = read('name = "g"\n');
    assert.deepEqual(guest, {
      name: "g",
      vcpus: 1,
      disks: [],
      modules: [],
      onPoweroff: "destroy",
      onReboot: "restart",
      onCrash: "destroy",
    });
  });

  it("reads xl's vif specs, and names a bad one against the file", () => {
    const { guest } = read('name = "g"\nvif = [ "mac=00:16:3e:00:00:01,bridge=xenbr0", "bridge=none" ]\n');
    assert.deepEqual(guest.nics, [{ mac: "00:16:3e:00:00:01", bridge: "xenbr0" }, { bridge: "none" }]);
    refused('name = "g"\nvif = [ "mac=nope" ]\n', "guest.cfg: vif: Invalid mac address: nope");
  });

  it("reads memory and maxmem in MiB, vcpus below 1 as 1, and ignores keys it does not know", () => {
    const { guest, warnings } = read('name="g"\nmemory=64\nmaxmem=0x80\nvcpus=0\nkernel="/boot/x"\n');
    assert.equal(guest.memoryKib, 64 * 1024);
    assert.equal(guest.maxmemKib, 128 * 1024);
    assert.equal(guest.vcpus, 1);
    assert.deepEqual(warnings, []);
  });

  it("warns about and skips a value of the wrong kind, as xl's getters do", () => {
    const { guest, warnings } = read('name="g"\nmemory="lots"\ndisk="x.img,raw,xvda"\n');
    assert.equal(guest.memoryKib, undefined);
    assert.deepEqual(guest.disks, []);
    assert.deepEqual(warnings, [
      "guest.cfg:2: warning: parameter `memory' is not a valid number",
      "guest.cfg:3: warning: parameter `disk' is a single value but should be a list",
    ]);
  });

  it("refuses a config without a name, or with an empty one", () => {
    refused("memory = 8\n", "Domain name must be specified.");
    refused('name = ""\n', "Domain name must be specified.");
    refused('name = [ "a" ]\n', "Domain name must be specified.");
  });

  it("takes xl's shutdown actions and names an unknown one as xl does", () => {
    const { guest } = read(
      'name="g"\non_poweroff="preserve"\non_reboot="rename-restart"\non_crash="coredump-restart"\n',
    );
    assert.deepEqual(
      [guest.onPoweroff, guest.onReboot, guest.onCrash],
      ["preserve", "rename-restart", "coredump-restart"],
    );
    refused('name="g"\non_reboot="reboot"\n', 'Unknown on_reboot action "reboot" specified');
  });

  it("parses each disk as xl's disk spec, a relative target against the caller's directory", () => {
    const { guest } = read(
      'name="g"\ndisk=[ "a.img,raw,xvda,rw", "vdev=xvdb, access=ro, target=/d/b.img" ]\n',
    );
    assert.deepEqual(
      guest.disks.map((d) => [d.target, d.vdev, d.access]),
      [
        ["/home/u/a.img", "xvda", "rw"],
        ["/d/b.img", "xvdb", "ro"],
      ],
    );
    refused(
      'name="g"\ndisk=[ "a.img,qcow3,xvda" ]\n',
      "guest.cfg: config parsing error in disk specification: unknown value for format: near `qcow3' in `a.img,qcow3,xvda'",
    );
  });

  it("roots xenlab_modules at the config file's directory and splits their arguments", () => {
    const { guest } = read(
      'name="g"\nxenlab_modules=[ "mods/front.ts  a=1 b", "/abs/back.ts" ]\n',
      "vm/guest.cfg",
      "/home/u",
    );
    assert.deepEqual(guest.modules, [
      { url: pathToFileURL("/home/u/vm/mods/front.ts").href, args: ["a=1", "b"] },
      { url: pathToFileURL("/abs/back.ts").href, args: [] },
    ]);
  });
});
