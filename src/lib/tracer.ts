/**
 * A trace-event source: the live view's one door into a hot path (docs/live-view.md).
 *
 * The producer guards every emission with the `on` field, so with nobody subscribed a traced
 * operation costs one property load and a branch, and the event object is never built:
 *
 *   if (this.tracer.on) this.tracer.emit({ kind: "xs-request", ... });
 *
 * Subscribers run synchronously in the producer's turn and must be cheap (count, mark dirty,
 * append to a bounded buffer); anything slower belongs in the subscriber's own timer.
 */
export class Tracer<E> {
  /** True while anyone listens; the one check on a hot path. */
  on = false;
  /**
   * False while the subscribers want only the events that change something (a producer may then
   * skip its reads: xenstored's READ, DIRECTORY, GET_PERMS...). The live view sets it false while
   * no viewer is connected, when it keeps only the devices' timelines.
   */
  all = true;
  readonly #subscribers = new Set<(event: E) => void>();

  /** Adds a subscriber; returns the function that removes it. */
  subscribe(fn: (event: E) => void): () => void {
    this.#subscribers.add(fn);
    this.on = true;
    return () => {
      this.#subscribers.delete(fn);
      this.on = this.#subscribers.size > 0;
    };
  }

  emit(event: E): void {
    for (const fn of this.#subscribers) fn(event);
  }
}
