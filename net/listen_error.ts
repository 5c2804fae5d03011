/**
 * Why a listener could not bind, as the one line the core and the edge
 * print before they exit 2: a port in use, an address that is not this
 * machine's, a host name that does not resolve (or is no host name at all).
 *
 * Deno throws the last two as a plain `Error` ("failed to lookup address
 * information: ...") or a `URIError` ("invalid host ..."), which used to
 * reach the top as an uncaught stack trace with exit 1, and under the
 * supervisor a restart loop.
 *
 * @module
 */

/**
 * The line for a failed bind of `host`:`port` (`portFlag` names the port's
 * flag), or undefined when `err` is not a bind failure.
 */
export function listenFailure(
  err: unknown,
  host: string,
  port: number,
  portFlag: string,
): string | undefined {
  const text = String((err as Error)?.message ?? err);
  if (err instanceof Deno.errors.AddrInUse || /EADDRINUSE|in use/i.test(text)) {
    return `port ${port} is in use (${portFlag})`;
  }
  if (
    err instanceof Deno.errors.AddrNotAvailable ||
    /EADDRNOTAVAIL|not available/i.test(text)
  ) {
    return `cannot listen on ${host}:${port}: not an address of this machine (--host)`;
  }
  if (
    err instanceof URIError || /failed to lookup address|ENOTFOUND/i.test(text)
  ) {
    return `cannot listen on ${host}:${port}: ${text.split("\n")[0]} (--host)`;
  }
  if (err instanceof Deno.errors.PermissionDenied || /EACCES/.test(text)) {
    return `cannot listen on ${host}:${port}: ${
      text.split("\n")[0]
    } (${portFlag})`;
  }
  return undefined;
}
