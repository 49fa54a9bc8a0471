/**
 * The live view's page (docs/live-view.md): plain DOM, no framework. It listens to the server's
 * `/events` stream (server-sent events: a whole `state` when something changed, at most every
 * 100 ms, and `log` batches of requests) and redraws the panels from the latest state. Links
 * between panels (a grant → the key that published it → back) select their target and scroll
 * it into view.
 */
import type { LiveNode, LiveRing, LiveState, LogEntry } from "./protocol.ts";
import { startTour } from "./tour.ts";

const LOG_ROWS = 400;

/** `&<>"'` escaped, for text put into innerHTML. */
export function esc(s: string | number): string {
  return String(s).replace(
    /[&<>"']/g,
    (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!,
  );
}

function $(sel: string): HTMLElement {
  const el = document.querySelector<HTMLElement>(sel);
  if (el === null) throw new Error(`No element ${sel}`);
  return el;
}

const body = (panel: string): HTMLElement => $(`#p-${panel} .body`);

const drawn = new WeakMap<Element, string>();

/** Replaces an element's content only when its HTML changed, so an unchanged panel keeps its DOM. */
function setHtml(el: Element, html: string): void {
  if (drawn.get(el) === html) return;
  drawn.set(el, html);
  el.innerHTML = html;
}

interface View {
  state: LiveState | null;
  log: LogEntry[];
  /** The selected node's path, or a grant/port as `grant:1:8`, `port:1:3`. */
  selected: string | null;
}

const view: View = { state: null, log: [], selected: null };

function perms(ps: readonly string[]): string {
  return ps
    .map((p) => `<span class="badge ${esc(p[0] ?? "")}" title="${permTitle(p)}">${esc(p)}</span>`)
    .join("");
}

function permTitle(p: string): string {
  const what = { n: "none", r: "read", w: "write", b: "read and write" }[p[0] ?? ""] ?? p;
  return esc(`dom${p.slice(1)}: ${what}`);
}

function nodeRow(n: LiveNode, tick: number): string {
  const depth = n.path === "/" ? 0 : n.path.split("/").length - 1;
  const name = n.path === "/" ? "/" : n.path.slice(n.path.lastIndexOf("/") + 1);
  const flash = n.changed >= tick && n.changed > 0 ? " flash" : "";
  const sel = view.selected === n.path ? " sel" : "";
  const grant = view.state?.grants.find((g) => g.key === n.path);
  const port = view.state?.ports.find((p) => p.key === n.path);
  const links =
    (grant ? ` <a class="link" data-go="grant:${grant.domid}:${grant.ref}">→ grant ${grant.ref}</a>` : "") +
    (port ? ` <a class="link" data-go="port:${port.domid}:${port.port}">→ port ${port.port}</a>` : "");
  return (
    `<div class="node${flash}${sel}" data-path="${esc(n.path)}" style="padding-left:${depth * 12}px">` +
    `${esc(name)}${n.value === "" ? "" : ` = <span class="val">"${esc(n.value)}"</span>`}` +
    `${perms(n.perms)}${n.writer === undefined ? "" : ` <span class="by">by ${esc(n.writer)}</span>`}${links}</div>`
  );
}

function renderTree(s: LiveState): void {
  const f = ($("#tree-filter") as HTMLInputElement).value.trim();
  const rows = s.nodes.filter((n) => f === "" || n.path.includes(f)).map((n) => nodeRow(n, s.tick));
  const el = body("xenstore");
  const top = el.scrollTop;
  setHtml(el, rows.join(""));
  el.scrollTop = top;
  setHtml(
    $("#watches"),
    table(
      ["connection", "path", "token"],
      s.watches.map((w) => [esc(w.conn), esc(w.path), esc(w.token)]),
    ),
  );
}

function table(
  head: readonly string[],
  rows: readonly (readonly string[])[],
  attrs: readonly string[] = [],
): string {
  if (rows.length === 0) return `<p class="ev">none</p>`;
  return (
    `<table><tr>${head.map((h) => `<th>${esc(h)}</th>`).join("")}</tr>` +
    rows.map((r, i) => `<tr ${attrs[i] ?? ""}>${r.map((c) => `<td>${c}</td>`).join("")}</tr>`).join("") +
    "</table>"
  );
}

const keyLink = (path: string | undefined): string =>
  path === undefined
    ? ""
    : `<a class="link" data-go="${esc(path)}">${esc(path.replace(/^\/local\/domain\//, "…/"))}</a>`;

function stateBadge(text: string): string {
  const n = /\((\d+)\)/.exec(text)?.[1] ?? "";
  return `<span class="st s${n}">${esc(text)}</span>`;
}

function renderDevices(s: LiveState): void {
  const cards = s.devices.map((d) => {
    const lanes = d.timeline
      .map((e) => {
        const cls = `ev ${e.kind}`;
        const t = new Date(e.t).toISOString().slice(17, 23);
        const text =
          e.kind === "state"
            ? `${stateBadge(e.text.replace(/ by .*/, ""))} ${esc(e.text.replace(/^.* by/, "by"))}`
            : esc(e.text);
        const cell = `<div class="${cls}" data-side="${e.side}" data-kind="${e.kind}">${t} ${text}</div>`;
        return e.side === "frontend" ? `${cell}<div></div>` : `<div></div>${cell}`;
      })
      .join("");
    const ok = d.why === "connected";
    return (
      `<div class="device" data-device="${esc(d.id)}"><b>${esc(d.type)} ${esc(d.devid)}</b> ` +
      `frontend dom${d.frontend.domid} ${stateBadge(d.frontend.state)} ↔ backend dom${d.backend.domid} ` +
      `${stateBadge(d.backend.state)}<p class="why${ok ? " ok" : ""}">${esc(d.why)}</p>` +
      `<div class="lanes"><div class="head">frontend (dom${d.frontend.domid}) ${keyLink(d.frontend.path)}</div>` +
      `<div class="head">backend (dom${d.backend.domid}) ${keyLink(d.backend.path)}</div>${lanes}</div></div>`
    );
  });
  setHtml(body("devices"), cards.join("") || `<p class="ev">no XenBus devices yet</p>`);
}

/** A ring's indexes as one row: the shared ones, then each end's private ones, then size and free. */
function ringTable(r: LiveRing): string {
  const cols: [string, number, string][] = Object.entries(r.indexes).map(([k, v]) => [
    k,
    v,
    `data-index="${esc(k)}"`,
  ]);
  for (const end of ["front", "back"] as const) {
    for (const [k, v] of Object.entries(r.pvt?.[end] ?? {}))
      cols.push([`${end} ${k}`, v, `data-pvt="${end}.${esc(k)}"`]);
  }
  cols.push(["size", r.size, ""], ["free", r.free, ""]);
  return (
    `<table><tr>${cols.map(([k]) => `<th>${esc(k)}</th>`).join("")}</tr>` +
    `<tr>${cols.map(([, v, a]) => `<td ${a}>${v}</td>`).join("")}</tr></table>`
  );
}

function renderTables(s: LiveState): void {
  setHtml(
    body("domains"),
    table(
      ["domid", "name", "state", "pages", "vCPUs"],
      s.domains.map((d) => [
        String(d.domid),
        esc(d.name),
        esc(d.state),
        `${d.pages}/${d.maxPages}`,
        String(d.vcpus),
      ]),
    ),
  );
  setHtml(
    body("grants"),
    table(
      ["dom", "ref", "flags", "granted to", "frame", "mapped by", "published by"],
      s.grants.map((g) => [
        `dom${g.domid}`,
        String(g.ref),
        `0x${g.flags.toString(16)} ${esc(g.flagNames.join("|"))}`,
        `dom${g.grantee}`,
        String(g.frame),
        esc(g.mappedBy.map((m) => `dom${m}`).join(", ")),
        keyLink(g.key),
      ]),
      s.grants.map(
        (g) =>
          `data-grant="${g.domid}:${g.ref}" id="grant-${g.domid}-${g.ref}"${view.selected === `grant:${g.domid}:${g.ref}` ? ' class="sel"' : ""}`,
      ),
    ),
  );
  setHtml(
    body("ports"),
    table(
      ["dom", "port", "state", "remote", "pending", "masked", "key"],
      s.ports.map((p) => [
        `dom${p.domid}`,
        String(p.port),
        esc(p.state),
        esc(p.remote),
        p.pending ? "yes" : "",
        p.masked ? "yes" : "",
        keyLink(p.key),
      ]),
      s.ports.map(
        (p) =>
          `data-port="${p.domid}:${p.port}" id="port-${p.domid}-${p.port}"${view.selected === `port:${p.domid}:${p.port}` ? ' class="sel"' : ""}`,
      ),
    ),
  );
  setHtml(
    body("rings"),
    s.rings
      .map(
        (r) =>
          `<div class="device" data-ring="${esc(r.id)}"><b>${esc(r.id)}</b> <span class="ev">${esc(r.kind)} ring, ${esc(r.where)}</span> ${keyLink(r.key)}` +
          ringTable(r) +
          `<pre>${r.last.map(esc).join("\n")}</pre></div>`,
      )
      .join(""),
  );
  setHtml(
    body("consoles"),
    s.consoles
      .map(
        (c) =>
          `<div class="console" data-console="${c.domid}"><h3>${esc(c.name)} (dom${c.domid})</h3>` +
          (c.output === null
            ? ""
            : `<div class="ev">hvc0: what the guest wrote on its PV console, newest last (${c.outputBytes} bytes in all)</div><pre class="hvc">${esc(c.output)}</pre>`) +
          `<div class="ev">kernel log (printk), last ${c.lines.length} lines</div><pre class="dmesg">${c.lines.map(esc).join("\n")}</pre></div>`,
      )
      .join(""),
  );
  for (const pre of document.querySelectorAll("#p-consoles pre")) pre.scrollTop = pre.scrollHeight;
  const c = s.counters;
  const hc = Object.entries(c.hypercalls)
    .map(([k, v]) => `${k} ${v}`)
    .join(", ");
  $("#counters").textContent =
    `${c.xsRequests} requests, ${c.xsErrors} errors, ${c.watchEvents} watch events; hypercalls: ${hc || "none"}`;
}

function renderLog(): void {
  const f = ($("#log-filter") as HTMLInputElement).value.trim().toLowerCase();
  const words = f.split(/\s+/).filter((w) => w !== "");
  const rows = view.log
    .filter((e) => {
      const line = `${e.conn} dom${e.domid} ${e.type} ${e.path} ${e.result}`.toLowerCase();
      return words.every((w) => line.includes(w));
    })
    .slice(-200)
    .reverse();
  setHtml(
    body("log"),
    table(
      ["time", "conn", "type", "path", "result"],
      rows.map((e) => [
        new Date(e.t).toISOString().slice(11, 23),
        esc(e.conn),
        esc(e.type),
        esc(e.path),
        e.result === "OK" ? "OK" : `<span class="err">${esc(e.result)}</span>`,
      ]),
    ),
  );
}

function render(): void {
  const s = view.state;
  if (s === null) return;
  renderTables(s);
  renderDevices(s);
  // Each timeline shows its latest events.
  for (const l of document.querySelectorAll(".lanes")) l.scrollTop = l.scrollHeight;
  renderTree(s);
  for (const fn of onState) fn(s);
}

/** Selects a node (its path) or a grant/port (`grant:D:R`, `port:D:P`) and scrolls to it. */
export function go(target: string): void {
  view.selected = target;
  if (target.startsWith("/")) ($("#tree-filter") as HTMLInputElement).value = "";
  render();
  const sel = target.startsWith("grant:")
    ? `#grant-${target.slice(6).replace(":", "-")}`
    : target.startsWith("port:")
      ? `#port-${target.slice(5).replace(":", "-")}`
      : `[data-path="${CSS.escape(target)}"]`;
  document.querySelector(sel)?.scrollIntoView({ block: "center", behavior: "smooth" });
}

/** Outlines a panel for a moment and scrolls to it (the tour points with it). */
export function point(panel: string): void {
  const el = document.getElementById(`p-${panel}`);
  if (el === null) return;
  for (const s of document.querySelectorAll("section.pointed")) s.classList.remove("pointed");
  el.classList.add("pointed");
  el.scrollIntoView({ block: "start", behavior: "smooth" });
}

const onState: ((s: LiveState) => void)[] = [];

function connect(): void {
  const status = $("#status");
  const es = new EventSource("events");
  es.addEventListener("open", () => {
    status.textContent = "live";
    status.className = "status live";
  });
  es.addEventListener("error", () => {
    status.textContent = "disconnected: retrying…";
    status.className = "status down";
  });
  es.addEventListener("state", (e) => {
    view.state = JSON.parse((e as MessageEvent<string>).data) as LiveState;
    render();
  });
  es.addEventListener("log", (e) => {
    const batch = JSON.parse((e as MessageEvent<string>).data) as LogEntry[];
    const last = view.log[view.log.length - 1]?.seq ?? 0;
    view.log.push(...batch.filter((x) => x.seq > last));
    if (view.log.length > LOG_ROWS) view.log.splice(0, view.log.length - LOG_ROWS);
    renderLog();
  });
}

document.addEventListener("click", (e) => {
  const a = (e.target as HTMLElement).closest<HTMLElement>("[data-go]");
  if (a !== null) {
    e.preventDefault();
    go(a.dataset.go!);
    return;
  }
  const n = (e.target as HTMLElement).closest<HTMLElement>(".node[data-path]");
  if (n !== null) go(n.dataset.path!);
});
$("#tree-filter").addEventListener("input", render);
$("#log-filter").addEventListener("input", renderLog);
startTour($("#tour"), { point, go, onState: (fn) => onState.push(fn) });
connect();
