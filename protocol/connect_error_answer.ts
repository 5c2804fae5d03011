/**
 * A Connect error as an HTTP answer, in the form the request's client reads
 * (connect-es, connect-go): a unary request gets the HTTP status and a JSON
 * error body; a streaming one (`application/connect+proto|json`) gets HTTP
 * 200 and an end-stream message carrying the error, because a Connect
 * client reads no body from a streaming answer that is not 200 and makes
 * its code from the HTTP status alone (429 would read UNAVAILABLE, 500
 * UNKNOWN).
 *
 * @module
 */
import { encodeConnectEndStream } from "./connect_end_stream.ts";

/** Whether a Connect request's content type is a streaming one. */
export function isConnectStreaming(contentType: string | null): boolean {
  return contentType !== null &&
    contentType.toLowerCase().startsWith("application/connect+");
}

/**
 * The answer for a Connect request that ends with error `code` (snake case,
 * e.g. "resource_exhausted") before any message; `status` is the unary
 * form's HTTP status.
 */
export function connectErrorAnswer(
  request: Request,
  status: number,
  code: string,
  message: string,
  headers: [string, string][] = [],
): Response {
  const type = request.headers.get("content-type");
  if (isConnectStreaming(type)) {
    return new Response(encodeConnectEndStream({ error: { code, message } }), {
      status: 200,
      headers: [...headers, ["content-type", type!.split(";")[0].trim()]],
    });
  }
  return Response.json({ code, message }, { status, headers });
}
