/**
 * The XenStore keys of a vif device, named once for netfront, netback and the toolstack: io/netif.h's
 * feature keys, the keys Linux's netback and netfront write (drivers/net/xen-netback/xenbus.c,
 * drivers/net/xen-netfront.c), and those libxl writes for a NIC (libxl_nic.c). The keys every
 * XenBus device has (`state`, `online`, `frontend`, `backend`, ...) are the XenBus core's.
 */

/** Keys in the backend's directory, /local/domain/0/backend/vif/<domid>/<devid>. */
export const VIF_BACKEND = {
  // Written by the toolstack (libxl__set_xenstore_nic).
  mac: "mac",
  /** xl's `bridge=`: xenlab has no bridges; each vif gets its own passt (docs/net.md). */
  bridge: "bridge",
  handle: "handle",
  type: "type",
  script: "script",
  /** "" makes Linux's netback hold back Connected until the hotplug script wrote "connected". */
  hotplugStatus: "hotplug-status",
  mtu: "mtu",

  // Written by netback (netback_probe).
  featureSg: "feature-sg",
  featureGsoTcpv4: "feature-gso-tcpv4",
  featureGsoTcpv6: "feature-gso-tcpv6",
  featureIpv6CsumOffload: "feature-ipv6-csum-offload",
  featureRxCopy: "feature-rx-copy",
  featureRxFlip: "feature-rx-flip",
  featureSplitEventChannels: "feature-split-event-channels",
  multiQueueMaxQueues: "multi-queue-max-queues",
  /** "0": carrier down; absent: up. */
  carrier: "carrier",
} as const;

/** Keys in the frontend's directory, /local/domain/<domid>/device/vif/<devid>. */
export const VIF_FRONTEND = {
  // Written by the toolstack.
  handle: "handle",
  mac: "mac",
  mtu: "mtu",
  trusted: "trusted",

  // Written by netfront (talk_to_netback), flat for one queue.
  txRingRef: "tx-ring-ref",
  rxRingRef: "rx-ring-ref",
  eventChannel: "event-channel",
  eventChannelTx: "event-channel-tx",
  eventChannelRx: "event-channel-rx",
  multiQueueNumQueues: "multi-queue-num-queues",
  requestRxCopy: "request-rx-copy",
  featureRxNotify: "feature-rx-notify",
  featureSg: "feature-sg",
  featureGsoTcpv4: "feature-gso-tcpv4",
  featureGsoTcpv6: "feature-gso-tcpv6",
  featureIpv6CsumOffload: "feature-ipv6-csum-offload",
  featureNoCsumOffload: "feature-no-csum-offload",
} as const;

/** A MAC address as six bytes, from `xx:xx:xx:xx:xx:xx`; undefined when malformed. */
export function parseMac(text: string | undefined): Uint8Array | undefined {
  if (text === undefined || !/^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/.test(text)) return undefined;
  return Uint8Array.from(text.split(":").map((h) => Number.parseInt(h, 16)));
}

/** `xx:xx:xx:xx:xx:xx`, lower case, as libxl writes it. */
export function formatMac(mac: Uint8Array): string {
  return Array.from(mac.subarray(0, 6), (b) => b.toString(16).padStart(2, "0")).join(":");
}
