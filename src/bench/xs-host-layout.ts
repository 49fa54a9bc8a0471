/**
 * The XenStore nodes `xl create` leaves for one PV guest with a console, two disks and a vif,
 * after libxl's keys (Xen 4.17 tools/libs/light: libxl__domain_make and libxl__build_post in
 * libxl_create.c/libxl_dom.c, libxl__device_generic_add in libxl_device.c, and the console,
 * disk and nic device types), with the permissions libxl gives them:
 *
 *   /local/domain/N                  n0 rN    the guest reads its home, dom0 owns it
 *     vm name domid cpu/* memory/* store/* console/* image/*   (libxl's values)
 *     device control/shutdown control/feature-* data drivers feature attr error   nN (the guest's)
 *     device/vbd/51712, 51728; device/vif/0   nN r0   the frontends
 *   /local/domain/0/backend/{vbd,vif,console}/N/…   n0 rN   the backends
 *   /vm/UUID                         n0 rN    name, uuid, start_time, image/*
 *   /libxl/N                         n0       libxl's own record of the devices
 *
 * Values are what libxl writes for such a guest (paths, ids, "online", states), so the sizes
 * are realistic; the order is libxl's: the domain, then its devices.
 */

export interface LayoutOp {
  readonly path: string;
  readonly value: string;
  /** Permissions to set after the write (XS_SET_PERMS strings), or null: inherited. */
  readonly perms: readonly string[] | null;
}

const VBDS = [
  { devid: 51712, dev: "xvda", target: "/dev/vg0/guest-N-root" },
  { devid: 51728, dev: "xvdb", target: "/dev/vg0/guest-N-data" },
];

function uuidOf(domid: number): string {
  const h = domid.toString(16).padStart(12, "0");
  return `00000000-0000-4000-8000-${h}`;
}

/** The nodes of guest `domid`, in the order libxl writes them. */
export function guestLayout(domid: number): LayoutOp[] {
  const ops: LayoutOp[] = [];
  const dom = `/local/domain/${domid}`;
  const vm = `/vm/${uuidOf(domid)}`;
  const libxl = `/libxl/${domid}`;
  const be = "/local/domain/0/backend";
  const ro = ["n0", `r${domid}`];
  const rw = [`n${domid}`];
  const fe = [`n${domid}`, "r0"];
  const w = (path: string, value: string, perms: readonly string[] | null = null) =>
    ops.push({ path, value, perms });
  // libxl__domain_make
  w(dom, "", ro);
  w(vm, "", ro);
  w(libxl, "", ["n0"]);
  w(`${libxl}/device`, "", ["n0"]);
  w(`${dom}/vm`, vm);
  w(`${dom}/name`, `guest-${domid}`);
  w(`${vm}/uuid`, uuidOf(domid));
  w(`${vm}/name`, `guest-${domid}`);
  w(`${vm}/start_time`, `${1_733_300_000 + domid}.42`);
  for (const k of ["device", "control/shutdown", "control/feature-poweroff", "control/feature-reboot"])
    w(`${dom}/${k}`, "", rw);
  for (const k of ["control/feature-suspend", "control/sysrq", "data", "drivers", "feature", "attr", "error"])
    w(`${dom}/${k}`, "", rw);
  w(`${dom}/control/platform-feature-multiprocessor-suspend`, "1");
  w(`${dom}/control/platform-feature-xs_reset_watches`, "1");
  w(`${libxl}/type`, "pv");
  // libxl__build_post
  w(`${dom}/domid`, String(domid));
  w(`${dom}/memory/static-max`, "1048576");
  w(`${dom}/memory/target`, "1048576");
  w(`${dom}/memory/videoram`, "-1");
  for (let cpu = 0; cpu < 2; cpu++) w(`${dom}/cpu/${cpu}/availability`, "online");
  w(`${dom}/store/port`, "1");
  w(`${dom}/store/ring-ref`, String(0xfeffc - domid));
  w(`${vm}/image/ostype`, "linux");
  w(`${vm}/image/kernel`, "/boot/vmlinuz-6.1.0-guest");
  w(`${vm}/image/ramdisk`, "/boot/initrd.img-6.1.0-guest");
  w(`${vm}/image/cmdline`, "root=/dev/xvda1 ro console=hvc0");
  // The console: frontend in the domain's home, backend under dom0's.
  const cb = `${be}/console/${domid}/0`;
  w(cb, "", ro);
  for (const [k, v] of [
    ["frontend", `${dom}/console`],
    ["frontend-id", String(domid)],
    ["online", "1"],
    ["state", "1"],
    ["protocol", "vt100"],
    ["type", "xenconsoled"],
  ])
    w(`${cb}/${k}`, v!);
  w(`${dom}/console`, "", fe);
  for (const [k, v] of [
    ["backend", cb],
    ["backend-id", "0"],
    ["limit", "1048576"],
    ["type", "xenconsoled"],
    ["output", "pty"],
    ["tty", `/dev/pts/${domid}`],
    ["port", "2"],
    ["ring-ref", String(0xfefff - domid)],
  ])
    w(`${dom}/console/${k}`, v!);
  // The disks.
  for (const d of VBDS) {
    const b = `${be}/vbd/${domid}/${d.devid}`;
    const f = `${dom}/device/vbd/${d.devid}`;
    w(b, "", ro);
    for (const [k, v] of [
      ["frontend", f],
      ["frontend-id", String(domid)],
      ["online", "1"],
      ["removable", "0"],
      ["bootable", "1"],
      ["state", "1"],
      ["dev", d.dev],
      ["type", "phy"],
      ["mode", "w"],
      ["device-type", "disk"],
      ["discard-enable", "1"],
      ["params", d.target.replace("N", String(domid))],
    ])
      w(`${b}/${k}`, v!);
    w(f, "", fe);
    for (const [k, v] of [
      ["backend", b],
      ["backend-id", "0"],
      ["state", "1"],
      ["virtual-device", String(d.devid)],
      ["device-type", "disk"],
    ])
      w(`${f}/${k}`, v!);
    w(`${libxl}/device/vbd/${d.devid}/frontend`, f);
    w(`${libxl}/device/vbd/${d.devid}/backend`, b);
  }
  // The vif.
  const vb = `${be}/vif/${domid}/0`;
  const vf = `${dom}/device/vif/0`;
  const mac = `00:16:3e:${((domid >> 16) & 0xff).toString(16).padStart(2, "0")}:${((domid >> 8) & 0xff).toString(16).padStart(2, "0")}:${(domid & 0xff).toString(16).padStart(2, "0")}`;
  w(vb, "", ro);
  for (const [k, v] of [
    ["frontend", vf],
    ["frontend-id", String(domid)],
    ["online", "1"],
    ["state", "1"],
    ["script", "/etc/xen/scripts/vif-bridge"],
    ["mac", mac],
    ["bridge", "xenbr0"],
    ["handle", "0"],
    ["type", "vif"],
  ])
    w(`${vb}/${k}`, v!);
  w(vf, "", fe);
  for (const [k, v] of [
    ["backend", vb],
    ["backend-id", "0"],
    ["state", "1"],
    ["handle", "0"],
    ["mac", mac],
  ])
    w(`${vf}/${k}`, v!);
  w(`${libxl}/device/vif/0/frontend`, vf);
  w(`${libxl}/device/vif/0/backend`, vb);
  return ops;
}
