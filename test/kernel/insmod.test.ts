/**
 * `insmod` of a driver module kept outside the repository, as a newcomer keeps one: a folder
 * under the system's temp directory with no package.json, in each of the four module syntaxes;
 * rmmod then insmod after an edit runs the edited code, the module's own imports included; and
 * a module that cannot load fails with one line naming its file and the cause.
 */
import assert from "node:assert/strict";
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { pathToFileURL } from "node:url";
import type { Host } from "../../src/host/host.ts";
import { type GuestHost, startHost } from "../helpers/host.ts";
import { tempDir } from "../helpers/peers.ts";
import { untilLogged } from "../helpers/until.ts";

describe("insmod of a module outside the repository", () => {
  let fx: GuestHost;
  let host: Host;
  let dir: string;
  const url = (file: string) => pathToFileURL(join(dir, file)).href;
  const write = (file: string, text: string) => writeFileSync(join(dir, file), text);

  before(async () => {
    fx = await startHost({ guest: { name: "guest", maxPages: 256 } });
    host = fx.host;
    dir = tempDir("xenlab-driver-");
  });
  after(async () => {
    rmSync(dir, { recursive: true, force: true });
    await fx?.stop();
  });

  it("loads .ts, .mts, .js and .mjs modules from a folder without a package.json", async () => {
    write("greeting.ts", `export const greeting: string = "hello";\n`);
    write(
      "bob_front.ts",
      `import { greeting } from "./greeting.ts";\n` +
        `interface K { printk(s: string): void }\n` +
        `export const name = "bob_front";\n` +
        `export function init(k: K): void { k.printk(\`bob_front inited! \${greeting}\`); }\n`,
    );
    write(
      "bob_m.mts",
      `export function init(k: { printk(s: string): void }) { k.printk("bob_m inited!"); }\n`,
    );
    write(
      "bob_j.js",
      `import { h } from "./h.mjs";\nexport function init(k) { k.printk(\`bob_j inited! \${h}\`); }\n`,
    );
    write("h.mjs", `export const h = "from h.mjs";\n`);
    write("bob_mj.mjs", `export function init(k) { k.printk("bob_mj inited!"); }\n`);
    assert.equal(await host.hv.insmod(fx.domU, url("bob_front.ts")), "bob_front");
    assert.equal(await host.hv.insmod(fx.domU, url("bob_m.mts")), "bob_m");
    assert.equal(await host.hv.insmod(fx.domU, url("bob_j.js")), "bob_j");
    assert.equal(await host.hv.insmod(fx.domU, url("bob_mj.mjs")), "bob_mj");
    await untilLogged(host, fx.domU, "bob_front inited! hello");
    await untilLogged(host, fx.domU, "bob_m inited!");
    await untilLogged(host, fx.domU, "bob_j inited! from h.mjs");
    await untilLogged(host, fx.domU, "bob_mj inited!");
  });

  it("runs the edited code, and its edited imports, after rmmod and insmod", async () => {
    write("greeting.ts", `export const greeting: string = "hello again";\n`);
    await host.hv.rmmod(fx.domU, "bob_front");
    await host.hv.insmod(fx.domU, url("bob_front.ts"));
    await untilLogged(host, fx.domU, "bob_front inited! hello again");
  });

  it("loads a module whose folder got a package.json without a type after the host started", async () => {
    write("package.json", `{ "name": "bob" }\n`);
    write(
      "bob_late.ts",
      `export function init(k: { printk(s: string): void }) { k.printk("bob_late inited!"); }\n`,
    );
    await host.hv.insmod(fx.domU, url("bob_late.ts"));
    await untilLogged(host, fx.domU, "bob_late inited!");
  });

  it("fails a module that cannot load with one line: its path and the cause", async () => {
    write("broken.ts", `export const x: number = ;\n`);
    write("uses_broken.ts", `import { x } from "./broken.ts";\nexport function init() { return x; }\n`);
    write("uses_missing.ts", `import { y } from "./missing.ts";\nexport function init() { return y; }\n`);
    write("bad.js", `export const b = 1 +* 2;\nexport function init() {}\n`);
    write("no_init.ts", `export const name = "no_init";\n`);
    const cases: [string, RegExp][] = [
      ["uses_broken.ts", /: .*broken\.ts:1:\d+: Unexpected ";"$/],
      ["uses_missing.ts", /: Cannot find module '.*missing\.ts' imported from .*uses_missing\.ts$/],
      ["bad.js", /: SyntaxError: Unexpected token '\*'$/],
      ["no_init.ts", /: it exports no init\(\)$/],
      ["nowhere.ts", /: Cannot find module '.*nowhere\.ts'/],
    ];
    for (const [file, cause] of cases) {
      await assert.rejects(host.hv.insmod(fx.domU, url(file)), (e: Error) => {
        assert.ok(e.message.startsWith(`Cannot load ${join(dir, file)}: `), e.message);
        assert.match(e.message, cause);
        assert.doesNotMatch(e.message, /\n|\?insmod=/);
        return true;
      });
    }
  });
});
