/**
 * Dialling a client connection: TCP, then TLS with ALPN h2 for an https:
 * origin, both stoppable by one AbortSignal (the connection's handshake
 * timeout or its end).
 *
 * @module
 */

/** Where and how to dial. */
export interface ConnectionTarget {
  hostname: string;
  port: number;
  tls: boolean;
  /** PEM roots for TLS (added to the system roots). */
  caCerts?: string[];
}

/** Closes `conn`, which may be closed already. */
export function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // already closed by the peer or a failed write
  }
}

/** Connects (and shakes hands); `signal` aborts both steps. */
export async function dial(
  target: ConnectionTarget,
  signal: AbortSignal,
): Promise<Deno.Conn> {
  const tcp = await Deno.connect({
    hostname: target.hostname,
    port: target.port,
    signal,
  });
  tcp.setNoDelay(true);
  if (!target.tls) return tcp;
  let conn: Deno.TlsConn;
  try {
    signal.throwIfAborted();
    conn = await Deno.startTls(tcp, {
      hostname: target.hostname,
      caCerts: target.caCerts,
      alpnProtocols: ["h2"],
    });
  } catch (e) {
    closeQuietly(tcp);
    throw e;
  }
  // Closing the socket is the only way to stop a handshake in progress.
  const abort = () => closeQuietly(conn);
  signal.addEventListener("abort", abort);
  try {
    const { alpnProtocol } = await conn.handshake();
    if (alpnProtocol !== "h2") {
      throw new Error(
        `upstream TLS did not negotiate HTTP/2 (ALPN ${
          alpnProtocol ?? "none"
        })`,
      );
    }
  } catch (e) {
    closeQuietly(conn);
    throw e;
  } finally {
    signal.removeEventListener("abort", abort);
  }
  return conn;
}
