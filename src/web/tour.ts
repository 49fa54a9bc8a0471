/**
 * The guided tour (docs/live-view.md): the seed's series (SilentAlice's Xen Log 8–15) replayed on
 * the live host. Each step says what to look at, points at its panel, gives the command to run
 * in a shell (the seed's activate.sh one line at a time, with Debian's real xenstore-write), and
 * ticks itself done when the live state shows its effect; a step's node is selected in the tree
 * when it appears.
 */
import type { LiveState } from "./protocol.ts";

export interface TourHooks {
  point(panel: string): void;
  go(target: string): void;
  onState(fn: (s: LiveState) => void): void;
}

interface Step {
  readonly title: string;
  readonly panel: string;
  readonly text: string;
  readonly cmds?: readonly string[];
  /** A node the step creates or changes: selected when it appears. */
  readonly node?: string;
  readonly done?: (s: LiveState) => boolean;
}

/** What the server tells the tour: xenstored's socket, the guest's domid, the seed's script. */
interface TourInfo {
  readonly socket: string | null;
  readonly domU: number | null;
  readonly activate: string;
}

const esc = (s: string): string =>
  s.replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]!);

const has = (s: LiveState, path: string): boolean => s.nodes.some((n) => n.path === path);

/** The xenstore-* lines of activate.sh with its variables expanded, each with the node it names. */
export function activateLines(script: string, domU: number): { line: string; node: string }[] {
  const device = /^DEVICE=(\S+)/m.exec(script)?.[1] ?? "alice_dev";
  const vars: Record<string, string> = { DEVICE: device, DOMU_ID: String(domU) };
  vars.DOMU_KEY = `/local/domain/${domU}/device/${device}/0`;
  vars.DOM0_KEY = `/local/domain/0/backend/${device}/${domU}/0`;
  const expand = (t: string) => t.replace(/\$(\w+)/g, (m, v: string) => vars[v] ?? m);
  return script
    .split("\n")
    .filter((l) => /^xenstore-\w+ /.test(l))
    .map((l) => ({ line: l, node: expand(l.split(/\s+/)[1] ?? "") }));
}

function steps(info: TourInfo): Step[] {
  const d = info.domU ?? 1;
  const dev = `alice_dev/${d}/0`;
  const fe = `/local/domain/${d}/device/alice_dev/0`;
  const be = `/local/domain/0/backend/alice_dev/${d}/0`;
  const device = (s: LiveState) => s.devices.find((x) => x.id === dev);
  const env = `export XENSTORED_PATH=${info.socket ?? "<the host's socket>"} DEVICE=alice_dev DOMU_ID=${d} DOMU_KEY=${fe} DOM0_KEY=${be}`;
  const lines = activateLines(info.activate, d).map(
    ({ line, node }, i): Step => ({
      title: `activate.sh ${i + 1}: ${line.split(/\s+/)[0]} …${node.slice(node.lastIndexOf("/"))}`,
      panel: "xenstore",
      text:
        (i === 0
          ? "The seed's script, one line at a time, with Debian's real tools (first the variables it uses). "
          : "") +
        (line.startsWith("xenstore-chmod")
          ? "The permission changes: the badge now says who may read. Without it the guest could not read its backend's keys."
          : node.endsWith("/state")
            ? "A state key: XenBus's watch fires in the domain whose bus covers this directory, and a driver for alice_dev is probed."
            : "The node appears (flashing), with its permissions and who wrote it."),
      cmds: i === 0 ? [env, line] : [line],
      node,
      done: (s) =>
        line.startsWith("xenstore-chmod")
          ? (s.nodes.find((n) => n.path === node)?.perms.join(" ") ?? "").startsWith("r")
          : has(s, node),
    }),
  );
  return [
    {
      title: "The cast",
      panel: "domains",
      text: "Two domains, each a worker thread: dom0 runs the backends (and, in the host's own thread, xenstored); the guest runs the frontends. Their pages, grant tables and event channels are the hypervisor's, in the main thread.",
      done: (s) => s.domains.length >= 2,
    },
    {
      title: "XenStore (Log 13)",
      panel: "xenstore",
      text: "The tree every domain shares. Badges are permissions, xenstore-ls -p style: the first names the owner (n0: dom0 owns it, others get nothing), then rN = domain N may read, wN write, bN both. Nodes flash when they change; 'by' says who wrote them last. The Requests panel lists every request.",
      cmds: [`XENSTORED_PATH=${info.socket ?? "<socket>"} xenstore-ls -fp /local/domain/${d}`],
    },
    {
      title: "A backend driver",
      panel: "consoles",
      text: "Load the backend into dom0: it registers alice_dev on the backend bus and waits for a device (its dmesg says inited).",
      cmds: [
        `XENSTORED_PATH=${info.socket ?? "<socket>"} xenlab insmod -d 0 examples/alice-connected/alice_back.ts`,
      ],
      done: (s) =>
        s.consoles.some((c) => c.domid === 0 && c.lines.some((l) => l.includes("Alice_back inited"))),
    },
    ...lines,
    {
      title: "Probe (Log 14)",
      panel: "devices",
      text: "The backend's state 1 made dom0's bus probe alice_back ('Probe called'), which went InitWait. No frontend driver is loaded in the guest, so the why-stuck line says what the device waits for.",
      done: (s) => device(s)?.backend.state.startsWith("InitWait") === true,
    },
    {
      title: "The frontend",
      panel: "devices",
      text: "Give the guest its device directory (libxl does; the seed's script leaves it dom0's, so the frontend could not write its ring-ref), then load the frontend: it grants a ring page, allocates an event channel, writes both keys and goes Initialised.",
      cmds: [
        `xenstore-chmod -r ${fe} n${d} r0`,
        `xenlab insmod -d ${d} examples/alice-connected/alice_front.ts`,
      ],
      node: `${fe}/ring-ref`,
      done: (s) => has(s, `${fe}/ring-ref`),
    },
    {
      title: "Grant table (Log 8)",
      panel: "grants",
      text: "The ring page's grant: ref, flags (permit_access; reading|writing while dom0 maps it), the granted domain and the frame. 'Published by' links to the ring-ref key; the key links back.",
      done: (s) => s.grants.some((g) => g.key === `${fe}/ring-ref` && g.mappedBy.includes(0)),
    },
    {
      title: "I/O ring (Log 9)",
      panel: "rings",
      text: "The shared ring on that page: req_prod/rsp_prod move as the frontend pings and the backend answers; req_event/rsp_event are where each side wants its next kick. The last slots are decoded (a response overwrites its request's slot).",
      done: (s) => s.rings.some((r) => r.id === dev && (r.indexes.rsp_prod ?? 0) > 0),
    },
    {
      title: "Event channel (Logs 10, 12)",
      panel: "ports",
      text: "The frontend's port (allocated unbound for dom0, then interdomain once dom0 bound it) and dom0's end; the key column links each to the event-channel key that published it.",
      done: (s) => s.ports.some((p) => p.key === `${fe}/event-channel` && p.state === "interdomain"),
    },
    {
      title: "XenBus states (Log 15)",
      panel: "devices",
      text: "The swim lanes: each end's state writes, the keys written between them and the watch events that woke the other side, up to both Connected.",
      done: (s) => device(s)?.why === "connected",
    },
    {
      title: "Close",
      panel: "devices",
      text: "Tell the backend to close: the frontend goes Closed, the backend unmaps and unbinds and goes Closed; the grant's reading/writing bits clear and the frontend ends it.",
      cmds: [`XENSTORED_PATH=${info.socket ?? "<socket>"} xenstore-write ${be}/state 5`],
      done: (s) => device(s)?.why.startsWith("closed") === true,
    },
  ];
}

export function startTour(root: HTMLElement, hooks: TourHooks): void {
  let list: Step[] = steps({ socket: null, domU: null, activate: "" });
  let cur = 0;
  let shownNode: string | null = null;
  let last: LiveState | null = null;
  const draw = (): void => {
    const s = list[cur]!;
    const done = (x: Step) => last !== null && x.done?.(last) === true;
    root.innerHTML =
      `<h2>Guided tour <small>the seed's series, live</small></h2><ol>` +
      list
        .map(
          (x, i) =>
            `<li data-step="${i}" class="${i === cur ? "cur" : ""}${done(x) ? " done" : ""}">${esc(x.title)}</li>`,
        )
        .join("") +
      `</ol><div id="tour-step" data-step="${cur}"><h3>${esc(s.title)}</h3><p>${esc(s.text)}</p>` +
      (s.cmds ?? []).map((c) => `<code class="cmd">${esc(c)}</code>`).join("") +
      `<p><button data-tour="prev">Back</button><button data-tour="next">Next</button>` +
      `<button data-tour="show">Show ${esc(s.panel)}</button></p></div>`;
  };
  const select = (i: number): void => {
    cur = Math.max(0, Math.min(list.length - 1, i));
    shownNode = null;
    draw();
    hooks.point(list[cur]!.panel);
  };
  root.addEventListener("click", (e) => {
    const t = e.target as HTMLElement;
    const li = t.closest<HTMLElement>("li[data-step]");
    if (li !== null) select(Number(li.dataset.step));
    else if (t.dataset.tour === "next") select(cur + 1);
    else if (t.dataset.tour === "prev") select(cur - 1);
    else if (t.dataset.tour === "show") hooks.point(list[cur]!.panel);
  });
  hooks.onState((s) => {
    last = s;
    const node = list[cur]?.node;
    if (node !== undefined && node !== shownNode && has(s, node)) {
      shownNode = node;
      hooks.go(node);
    }
    draw();
  });
  void fetch("tour.json")
    .then((r) => r.json() as Promise<TourInfo>)
    .then((info) => {
      list = steps(info);
      draw();
    });
  draw();
}
