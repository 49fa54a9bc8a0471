/**
 * Errors a caller may catch, one class per condition.
 *
 * `XsError` carries one of Xen's XenStore error names (the `xsd_errors` table of
 * `io/xs_wire.h`): the daemon turns it into an `XS_ERROR` reply, and the client raises it
 * when it receives one.
 */
/** The `xsd_errors` table in order; new names may only be appended (xs_wire.h). */
export const XS_ERROR_NAMES = [
  "EINVAL",
  "EACCES",
  "EEXIST",
  "EISDIR",
  "ENOENT",
  "ENOMEM",
  "ENOSPC",
  "EIO",
  "ENOTEMPTY",
  "ENOSYS",
  "EROFS",
  "EBUSY",
  "EAGAIN",
  "EISCONN",
  "E2BIG",
  "EPERM",
] as const;

export type XsErrorName = (typeof XS_ERROR_NAMES)[number];

const KNOWN = new Set<string>(XS_ERROR_NAMES);

export function isXsErrorName(s: string): s is XsErrorName {
  return KNOWN.has(s);
}

/** A XenStore error reply, by Xen's error name (`ENOENT`, `EACCES`, ...). */
export class XsError extends Error {
  readonly errno: XsErrorName;
  constructor(errno: XsErrorName, message?: string) {
    super(message ?? errno);
    this.name = "XsError";
    this.errno = errno;
  }
}

/**
 * A frame whose header announces more than `XENSTORE_PAYLOAD_MAX` bytes: `PacketReader.error`
 * once it has read such a header, and how a client's requests fail when its daemon sent one.
 */
export class PayloadTooLargeError extends Error {
  readonly length: number;
  constructor(length: number, max: number) {
    super(`Cannot read packet: payload of ${length} bytes is over the ${max}-byte limit`);
    this.name = "PayloadTooLargeError";
    this.length = length;
  }
}

/** The connection to xenstored closed before a reply arrived. */
export class ConnectionClosedError extends Error {
  constructor(message = "Connection to xenstored closed") {
    super(message);
    this.name = "ConnectionClosedError";
  }
}

/**
 * The daemon sent something the client cannot interpret (a reply to no request, a reply of
 * the wrong type, an unparsable payload). The client closes such a connection.
 */
export class XsProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "XsProtocolError";
  }
}

/**
 * The daemon stopped talking to this guest's ring: it set the shared page's `error` field
 * (1 event channel, 2 bad ring index, 3 payload too long).
 */
export class XsRingError extends ConnectionClosedError {
  readonly code: number;
  constructor(code: number, what: string) {
    super(`XenStore ring closed by the daemon: error ${code} (${what})`);
    this.name = "XsRingError";
    this.code = code;
  }
}

/**
 * A XenStore migration stream (src/xenstore/migration-format.ts) that cannot be read, or whose
 * state cannot be loaded: the message names the record and its byte offset.
 */
export class StateStreamError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "StateStreamError";
  }
}
