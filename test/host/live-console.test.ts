/**
 * The live view's Consoles panel reads what a guest writes on its PV console (hvc0) from
 * xenconsoled: the getty's banner at boot, then a command typed into the guest's console through
 * the host and its answer; bounded to the console's tail; the kernel log kept beside it.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { CONSOLE_TAIL_MAX, type ConsoleClient } from "../../src/console/xenconsoled.ts";
import type { Host } from "../../src/host/host.ts";
import { LiveView } from "../../src/host/live.ts";
import type { LiveConsole, LiveState } from "../../src/web/protocol.ts";
import { startHost, type TestHost } from "../helpers/host.ts";
import { until } from "../helpers/until.ts";

class Client implements ConsoleClient {
  out = "";
  queued = 0;
  write(b: Uint8Array): void {
    this.out += Buffer.from(b).toString("latin1");
  }
  close(): void {}
}

describe("the live view's consoles", () => {
  let fx: TestHost;
  let host: Host;
  let view: LiveView;
  let domid: number;

  const console = async (id: number): Promise<LiveConsole> => {
    const s = JSON.parse((await view.snapshot()).json) as LiveState;
    const c = s.consoles.find((x) => x.domid === id);
    assert.ok(c !== undefined, `no console of domain ${id}`);
    return c;
  };

  before(async () => {
    fx = await startHost();
    ({ host } = fx);
    view = new LiveView(host);
    view.start();
    domid = (await host.createDomain({ name: "tty-guest" })).domid;
    await host.console.whenConnected(domid);
  });
  after(async () => {
    view?.stop();
    await fx?.stop();
  });

  it("shows the guest's boot output on hvc0, and dom0's kernel log without an hvc0", async () => {
    await until("the getty's banner in the snapshot", async () =>
      /xenlab tty-guest hvc0 \(domain \d+\)\nType 'help' for commands\./.test(
        (await console(domid)).output ?? "",
      ),
    );
    const c = await console(domid);
    assert.ok(c.outputBytes > 0);
    assert.ok(Array.isArray(c.lines));
    const dom0 = await console(0);
    assert.equal(dom0.output, null);
    assert.ok(dom0.lines.length > 0, "dom0's kernel log");
  });

  it("shows a command typed into the guest's console and the guest's answer, live", async () => {
    const client = new Client();
    const session = host.console.attach(domid, client);
    try {
      session.input(new TextEncoder().encode("xenstore-read name\r"));
      await until("the answer in the snapshot", async () =>
        /# xenstore-read name\ntty-guest\n/.test((await console(domid)).output ?? ""),
      );
      // The client got the same bytes: the view takes nothing from it.
      await until("the answer at the client", () => client.out.includes("tty-guest\r\n"));
    } finally {
      session.detach();
    }
  });

  it("keeps only the console's tail however much the guest writes", async () => {
    const client = new Client();
    const session = host.console.attach(domid, client);
    try {
      const word = "z".repeat(200);
      // One line at a time, within xenconsoled's input queue (CONSOLE_INPUT_MAX): each comes
      // back twice, as the getty's echo and as echo's answer.
      for (let i = 0; i < 100; i++) {
        session.input(new TextEncoder().encode(`echo ${word}${i}\r`));
        const line = `${word}${i}\r\n`;
        await until(`line ${i} answered`, () => client.out.split(line).length === 3, {
          detail: () => JSON.stringify(client.out.slice(-300)),
        });
      }
      await until("the last echo in the snapshot", async () =>
        (await console(domid)).output!.includes(`${word}99\n`),
      );
      const c = await console(domid);
      assert.ok(c.outputBytes > CONSOLE_TAIL_MAX, `wrote ${c.outputBytes}`);
      assert.ok(c.output!.length <= CONSOLE_TAIL_MAX, `holds ${c.output!.length}`);
      assert.doesNotMatch(c.output!, /Type 'help'/, "the banner left the tail");
    } finally {
      session.detach();
    }
  });
});
