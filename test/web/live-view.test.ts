/**
 * The live view in a real browser: `xenlab up --http 0` from source, Debian's chromium driven by
 * playwright-core, the seed's activate.sh run with Debian's xenstore-write, and the page checked
 * panel by panel as the alice_dev pair connects, and the guest's hvc0 output (docs/live-view.md). The page is served from
 * dist/web: run `npm run build` first.
 *
 * XENLAB_SCREENSHOT=FILE also saves a screenshot of the connected page there (docs/live-view.png).
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, rmSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it, type TestContext } from "node:test";
import { promisify } from "node:util";
import { type BrowserContext, chromium, type Page } from "playwright-core";
import { WEB_DIR } from "../../src/host/live-server.ts";
import { hasCommand, REPO, requirePeer, tempDir } from "../helpers/peers.ts";
import { until } from "../helpers/until.ts";
import { MAIN, type RunningHost, startUp } from "../helpers/up.ts";

const run = promisify(execFile);
const CHROMIUM = "/usr/bin/chromium";
const ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
const FE = "/local/domain/1/device/alice_dev/0";
const BE = "/local/domain/0/backend/alice_dev/1/0";
const DEV = '[data-device="alice_dev/1/0"]';

describe("the live view (xenlab up --http) in chromium", () => {
  let dir = "";
  let socket = "";
  let host: RunningHost | null = null;
  let ctx: BrowserContext | null = null;
  let page: Page;
  let url = "";
  let ready = false;

  const env = () => ({ ...process.env, XENSTORED_PATH: socket, DOMU_ID: "1" });
  const xenlab = (...args: string[]) =>
    run(process.execPath, ["--import", "tsx", MAIN, ...args], { env: env() });
  const text = async (sel: string) =>
    (await page.locator(sel).first().textContent({ timeout: 20_000 })) ?? "";
  const waitText = async (sel: string, re: RegExp) => {
    await until(
      `${sel} to match ${re}`,
      async () =>
        re.test(
          (await page
            .locator(sel)
            .first()
            .textContent()
            .catch(() => "")) ?? "",
        ),
      {
        detail: () => `${sel}`,
      },
    );
  };

  before(async (suite) => {
    const t = suite as TestContext;
    if (!requirePeer(t, "chromium (apt-get install chromium)", existsSync(CHROMIUM))) return;
    if (!requirePeer(t, "xenstore-write (apt-get install xenstore-utils)", hasCommand("xenstore-write")))
      return;
    assert.ok(existsSync(join(WEB_DIR, "index.html")), "the page is not built: run npm run build");
    dir = tempDir("xenlab-live-");
    socket = join(dir, "socket");
    host = await startUp(socket, ["--http", "0"]);
    await until("the live view's URL", () => /live view on http/.test(host!.stdout()));
    url = /live view on (http\S+)/.exec(host.stdout())![1]!;
    ctx = await chromium.launchPersistentContext(join(dir, "profile"), {
      executablePath: CHROMIUM,
      args: ARGS,
      headless: true,
      viewport: { width: 1500, height: 1100 },
    });
    page = ctx.pages()[0] ?? (await ctx.newPage());
    await page.goto(url);
    await waitText("#status", /^live$/);
    ready = true;
  });

  after(async () => {
    await ctx?.close();
    await host?.stop();
    if (dir !== "") rmSync(dir, { recursive: true, force: true });
  });

  it("answers 403 to a request without the token, or with a wrong one", async (t) => {
    if (!ready) return t.skip("no browser");
    const base = url.replace(/\?.*$/, "");
    assert.equal((await fetch(base)).status, 403);
    assert.equal((await fetch(`${base}events`)).status, 403);
    assert.equal((await fetch(`${base}?token=nope`)).status, 403);
    assert.equal((await fetch(url)).status, 200);
  });

  it("shows what the guest wrote on its PV console (hvc0), beside its kernel log", async (t) => {
    if (!ready) return t.skip("no browser");
    // The getty's banner and prompt, read by xenconsoled from dom1's console ring.
    await waitText(
      '[data-console="1"] pre.hvc',
      /xenlab \S+ hvc0 \(domain 1\)\s+Type 'help' for commands\.\s+\S*# $/,
    );
    assert.match(await text('[data-console="1"]'), /kernel log \(printk\)/);
    assert.equal(await page.locator('[data-console="0"] pre.hvc').count(), 0, "dom0 has no hvc0 here");
  });

  it("shows the nodes of the seed's activate.sh with their permissions, and why the device waits", async (t) => {
    if (!ready) return t.skip("no browser");
    await xenlab("insmod", "-d", "0", join(REPO, "examples/alice-connected/alice_back.ts"));
    await run("sh", [join(REPO, "examples/alice/activate.sh")], { env: env() });
    await page.fill("#tree-filter", "alice_dev");
    // xenstore-chmod $DOM0_KEY r: dom0 owns it, everyone reads.
    await waitText(`[data-path="${BE}"] .badge`, /^r0$/);
    await waitText(`[data-path="${FE}/backend"]`, new RegExp(`backend = "${BE}".*n0`));
    await waitText(`[data-path="${BE}/frontend-id"]`, /frontend-id = "1"/);
    // The backend probed and went InitWait; no frontend driver in the guest.
    await waitText(`${DEV} .why`, /^frontend Initialising: no driver for alice_dev in domain 1$/);
    // The timeline's entries come in their own update: wait for the backend's last to be InitWait.
    let last = "";
    await until(
      "the backend's InitWait on its timeline",
      async () => {
        const backend = await page
          .locator(`${DEV} [data-side="backend"][data-kind="state"]`)
          .allTextContents();
        last = backend.at(-1) ?? "";
        return /InitWait \(2\)/.test(last);
      },
      { detail: () => last },
    );
  });

  it("draws both ends' timelines to Connected once the frontend is loaded", async (t) => {
    if (!ready) return t.skip("no browser");
    await run("xenstore-chmod", ["-r", FE, "n1", "r0"], { env: env() });
    await xenlab("insmod", "-d", "1", join(REPO, "examples/alice-connected/alice_front.ts"));
    await waitText(`${DEV} .why`, /^connected$/);
    const lane = async (side: string) =>
      (await page.locator(`${DEV} [data-side="${side}"][data-kind="state"]`).allTextContents()).join(" | ");
    assert.match(await lane("frontend"), /Initialised \(3\).*Connected \(4\)/);
    assert.match(await lane("backend"), /InitWait \(2\).*Connected \(4\)/);
    assert.match(
      (await page.locator(`${DEV} [data-kind="key"]`).allTextContents()).join(" "),
      /ring-ref = \d+ by dom1.*event-channel = \d+ by dom1/,
    );
  });

  it("shows the ring-ref grant mapped by dom0, linked to its key and back", async (t) => {
    if (!ready) return t.skip("no browser");
    const ref = (await page.locator(`[data-path="${FE}/ring-ref"]`).textContent())!.match(/"(\d+)"/)![1]!;
    const row = `[data-grant="1:${ref}"]`;
    await waitText(row, /permit_access.*dom0.*dom0/);
    assert.match(await text(row), /ring-ref/);
    await page.locator(`${row} a.link`).dispatchEvent("click");
    await until("the ring-ref node selected", async () =>
      /\bsel\b/.test((await page.getAttribute(`[data-path="${FE}/ring-ref"]`, "class")) ?? ""),
    );
    await page
      .locator(`[data-path="${FE}/ring-ref"] a.link[data-go="grant:1:${ref}"]`)
      .dispatchEvent("click");
    await until("the grant selected", async () =>
      /\bsel\b/.test((await page.getAttribute(row, "class")) ?? ""),
    );
  });

  it("moves the ring's indexes with the pings", async (t) => {
    if (!ready) return t.skip("no browser");
    const ring = '[data-ring="alice_dev/1/0"]';
    // alice_front sends 8 pings once Connected; each is answered.
    await waitText(`${ring} [data-index="req_prod"]`, /^8$/);
    await waitText(`${ring} [data-index="rsp_prod"]`, /^8$/);
    assert.match(await text(`${ring} pre`), /rsp id 7 status 0 value 71/);
    // Each end's private indexes, shown by the alice drivers.
    await waitText(`${ring} [data-pvt="front.rsp_cons"]`, /^8$/);
    assert.equal(await text(`${ring} [data-pvt="back.req_cons"]`), "8");
    assert.match(await text(`[data-port] a.link[data-go="${FE}/event-channel"]`), /event-channel/);
    const shot = process.env.XENLAB_SCREENSHOT;
    if (shot !== undefined && shot !== "") {
      await page.fill("#tree-filter", "alice_dev");
      await page.locator("#tour li").nth(12).click();
      await page.evaluate("window.scrollTo(0, 0)");
      await page.screenshot({ path: shot, fullPage: false });
    }
  });

  it("follows the tour's close: both ends Closed, the ring's grant no longer mapped", async (t) => {
    if (!ready) return t.skip("no browser");
    await run("xenstore-write", [`${BE}/state`, "5"], { env: env() });
    await waitText(`${DEV} .why`, /^closed: waits for the toolstack to remove the device$/);
    const lane = await page.locator(`${DEV} [data-side="frontend"][data-kind="state"]`).allTextContents();
    assert.match(lane.at(-1) ?? "", /Closed \(6\)/);
    await until(
      "the ring grant ended",
      async () => (await page.locator('[data-ring="alice_dev/1/0"]').count()) === 0,
    );
  });
});
