/**
 * The errors a vchan's user may catch, one class per condition: setup refused (with the XenStore
 * key at fault when there is one), the peer gone while a blocking call waited, a wait too long.
 */
/** A vchan could not be set up: `key` names what was missing or wrong when there is one. */
export class VchanSetupError extends Error {
  readonly key: string | undefined;
  constructor(message: string, key?: string) {
    super(message);
    this.name = "VchanSetupError";
    this.key = key;
  }
}

/** The peer closed or died while a blocking call waited. */
export class VchanClosedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "VchanClosedError";
  }
}

/** A blocking call waited longer than its timeout. */
export class VchanTimeoutError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "VchanTimeoutError";
  }
}
