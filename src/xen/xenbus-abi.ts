/**
 * Xen's `public/io/xenbus.h`: the states of a split device's two ends. Each end writes its own
 * state, in decimal, to the `state` key of its XenStore directory, and watches the other's; the
 * toolstack, the frontend and the backend all read the same numbers, whatever their kernel.
 *
 * The names are Linux's `xenbus_strstate` table (xenbus_client.c), both ways: `XenbusState.Closed`
 * is 6 and `xenbusStateName(6)` is "Closed".
 */

/** `enum xenbus_state`. */
export const XenbusState = {
  Unknown: 0,
  Initialising: 1,
  /** Backend: probed, waiting for the frontend's details (hotplug finished, in Linux). */
  InitWait: 2,
  /** Frontend: ring granted, event channel allocated, details published. */
  Initialised: 3,
  Connected: 4,
  /** This end is going down. */
  Closing: 5,
  Closed: 6,
  Reconfiguring: 7,
  Reconfigured: 8,
} as const;
export type XenbusStateName = keyof typeof XenbusState;
export type XenbusStateValue = (typeof XenbusState)[XenbusStateName];

/** The names in value order: `STATE_NAMES[s]` is the name of state `s`. */
const STATE_NAMES: readonly XenbusStateName[] = (Object.keys(XenbusState) as XenbusStateName[]).sort(
  (a, b) => XenbusState[a] - XenbusState[b],
);

/** `xenbus_strstate`: the name of state `s`, "INVALID" for a number that names none. */
export function xenbusStateName(s: number): XenbusStateName | "INVALID" {
  return (Number.isInteger(s) && STATE_NAMES[s]) || "INVALID";
}

/** The state called `name` (as `xenbusStateName` spells it), or undefined. */
export function xenbusStateOf(name: string): XenbusStateValue | undefined {
  return Object.hasOwn(XenbusState, name) ? XenbusState[name as XenbusStateName] : undefined;
}

/**
 * A `state` key's text as a number; a missing key reads as Unknown, as Linux's
 * `xenbus_read_driver_state` reads a node it cannot find. Text that is not a number gives NaN,
 * which names no state: a driver treats it as any state it does not expect.
 */
export function parseXenbusState(text: string | undefined): number {
  return text === undefined ? XenbusState.Unknown : Number(text);
}
