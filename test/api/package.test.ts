/**
 * The package as an out-of-tree driver gets it: `npm pack`, installed offline into a project in
 * the system's temp directory, and a driver there that imports `xenlab/driver` by name, is
 * typechecked against the installed .d.ts files and loads into a running host.
 */
import assert from "node:assert/strict";
import { existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { pathToFileURL } from "node:url";
import { type GuestHost, startHost } from "../helpers/host.ts";
import { driverProject, packXenlab, TSC } from "../helpers/pack.ts";
import { tempDir } from "../helpers/peers.ts";
import { runTool } from "../helpers/tools.ts";
import { untilLogged } from "../helpers/until.ts";

const TSCONFIG = {
  compilerOptions: {
    target: "ES2022",
    module: "NodeNext",
    moduleResolution: "NodeNext",
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    allowImportingTsExtensions: true,
    types: [],
  },
};

const DRIVER = `import { type Kernel, type KernelModule, type XenbusDriver, XenbusState, xenbus } from "xenlab/driver";

export const name = "bob_front";

const driver: XenbusDriver = {
  name,
  ids: ["bob_dev"],
  probe(dev) {
    dev.kernel.printk(\`Bob: probed \${dev.nodename}\`);
  },
  async otherendChanged(dev, state) {
    if (state === XenbusState.Closed) await dev.switchState(XenbusState.Closed);
  },
};

export async function init(k: Kernel): Promise<void> {
  k.printk(\`DomU: Bob_front inited! (\${XenbusState.Connected} is Connected)\`);
  await xenbus(k).registerFrontend(driver);
}

export async function exit(k: Kernel): Promise<void> {
  await xenbus(k).unregister(driver);
}

export default { name, init, exit } satisfies KernelModule;
`;

describe("xenlab as a package", () => {
  let dir: string;
  let project: string;
  let tarball: string;

  before(async () => {
    dir = tempDir("xenlab-pack-");
    project = join(dir, "bob");
    tarball = await packXenlab(dir);
    mkdirSync(project);
    await driverProject(project, tarball);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it("packs dist/ with the public entry and its types", () => {
    const pkg = join(project, "node_modules/xenlab");
    for (const f of [
      "package.json",
      "dist/api/driver.js",
      "dist/api/driver.d.ts",
      "dist/kernel/kernel.d.ts",
    ]) {
      assert.ok(existsSync(join(pkg, f)), `${f} missing from the installed package`);
    }
    assert.ok(!existsSync(join(pkg, "src")), "the package ships dist/, not src/");
  });

  it("typechecks a driver importing xenlab/driver, and rejects a wrong use of it", async () => {
    writeFileSync(join(project, "tsconfig.json"), JSON.stringify(TSCONFIG));
    writeFileSync(join(project, "bob_front.ts"), DRIVER);
    const ok = await runTool(TSC, ["-p", project]);
    assert.equal(ok.code, 0, ok.stdout + ok.stderr);
    writeFileSync(
      join(project, "wrong.ts"),
      `import { XenbusState } from "xenlab/driver";\nXenbusState.Bogus;\n`,
    );
    const bad = await runTool(TSC, ["-p", project]);
    rmSync(join(project, "wrong.ts"));
    assert.equal(bad.code, 1, bad.stdout);
    assert.match(bad.stdout, /wrong\.ts\(2,13\): error TS2339: Property 'Bogus' does not exist/);
  });

  describe("the driver in a running host", () => {
    let fx: GuestHost;
    before(async () => {
      fx = await startHost({ guest: { name: "guest", maxPages: 256 } });
    });
    after(() => fx?.stop());

    it("loads, is probed for its device, and unloads", async () => {
      const url = pathToFileURL(join(project, "bob_front.ts")).href;
      assert.equal(await fx.host.hv.insmod(fx.domU, url), "bob_front");
      await untilLogged(fx.host, fx.domU, "DomU: Bob_front inited! (4 is Connected)");
      await fx.host.attachDevice("bob_dev", fx.domU);
      await untilLogged(fx.host, fx.domU, "Bob: probed device/bob_dev/0");
      await fx.host.hv.rmmod(fx.domU, "bob_front");
    });
  });
});
