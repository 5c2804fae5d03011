/**
 * Counters of what the server has done, read by the metrics stream.
 *
 * Plain numbers incremented in place: cheap enough for hot paths, and a
 * sampler turns them into rates by differencing two reads.
 */
export class ChatStats {
  /** RPCs started, of every kind. */
  callsStarted = 0;
  /** Streaming RPCs currently open. */
  activeStreams = 0;
  /** Messages published to rooms. */
  messagesPublished = 0;
  /** Deliveries handed to subscribers (one message to N subscribers is N). */
  deliveries = 0;
  /**
   * Deliveries dropped by the slow-consumer policy: under "drop", messages a
   * subscriber never got because history no longer held them when it
   * caught up.
   */
  dropped = 0;
  /**
   * Times a live subscriber was too slow to take a message (its queue full,
   * "drop" policy) and went on from history instead, once it drained.
   */
  fellBehind = 0;
  /** Subscribers ended by the slow-consumer policy. */
  slowDisconnects = 0;
  /** Of those, streams reset because the status could not be delivered in time. */
  stalledResets = 0;
}
