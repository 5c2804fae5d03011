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

/** An error answer's HTTP status, content type and body. */
export interface ConnectErrorParts {
  status: number;
  contentType: string;
  body: Uint8Array<ArrayBuffer>;
}

const encoder = new TextEncoder();

/**
 * The parts of the answer to a Connect request of content type
 * `requestType` that ends with error `code` (snake case, e.g.
 * "resource_exhausted") before any message; `status` is the unary form's
 * HTTP status.
 */
export function connectErrorParts(
  requestType: string | null,
  status: number,
  code: string,
  message: string,
): ConnectErrorParts {
  if (isConnectStreaming(requestType)) {
    return {
      status: 200,
      contentType: requestType!.split(";")[0].trim(),
      body: encodeConnectEndStream({ error: { code, message } }),
    };
  }
  return {
    status,
    contentType: "application/json",
    body: encoder.encode(JSON.stringify({ code, message })),
  };
}

/** {@linkcode connectErrorParts} as a Response, with `headers` added. */
export function connectErrorAnswer(
  request: Request,
  status: number,
  code: string,
  message: string,
  headers: [string, string][] = [],
): Response {
  const parts = connectErrorParts(
    request.headers.get("content-type"),
    status,
    code,
    message,
  );
  return new Response(parts.body, {
    status: parts.status,
    headers: [...headers, ["content-type", parts.contentType]],
  });
}
