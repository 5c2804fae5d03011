/**
 * Whether a listen failure is Deno's TLS refusing the certificate and key
 * it was given (not PEM, not a pair, a key where the certificate goes), so
 * the core and the edge can name both files in one line instead of
 * crashing. Deno reports these as `InvalidData`, or as an error whose
 * message speaks of the certificate or the key.
 *
 * @module
 */

/** Deno's words for a certificate and key it cannot use, or undefined. */
export function tlsPairError(err: unknown): string | undefined {
  const text = String((err as Error)?.message ?? err);
  return err instanceof Deno.errors.InvalidData ||
      /certificate|key/i.test(text)
    ? text
    : undefined;
}
