/** Thrown when the broker cannot take a request; maps to UNAVAILABLE. */
export class BrokerUnavailableError extends Error {
  override readonly name = "BrokerUnavailableError";
}
