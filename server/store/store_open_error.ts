/** The data directory or a file in it could not be opened or read; start-up must stop (exit 2). */
export class StoreOpenError extends Error {
  override name = "StoreOpenError";
}
