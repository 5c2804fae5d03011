/**
 * Test support for auth: tokens the tests sign themselves (HS256 and ES256),
 * a grpc-js interceptor that sends one, and a TLS certificate made with the
 * openssl CLI.
 */
import * as grpc from "@grpc/grpc-js";
import { exportSPKI, generateKeyPair, type JWTPayload, SignJWT } from "jose";
import {
  type CoreServer,
  startCoreServer,
  type StartOptions,
} from "../../server/server.ts";

/** An HS256 secret of the length the core requires. */
export const SECRET = "test-secret-0123456789-0123456789-abcdef";

/** Signs `claims` with HS256 and `secret`; `exp` defaults to an hour. */
export function hs256(
  claims: JWTPayload,
  secret: string = SECRET,
): Promise<string> {
  return new SignJWT({ exp: Math.floor(Date.now() / 1000) + 3600, ...claims })
    .setProtectedHeader({ alg: "HS256" })
    .sign(new TextEncoder().encode(secret));
}

/** An ES256 key pair: sign tokens with it, give the core its PEM file. */
export async function es256Keys(dir: string): Promise<{
  publicKeyFile: string;
  sign(claims: JWTPayload): Promise<string>;
}> {
  const { publicKey, privateKey } = await generateKeyPair("ES256");
  const publicKeyFile = `${dir}/es256.pub.pem`;
  await Deno.writeTextFile(publicKeyFile, await exportSPKI(publicKey));
  return {
    publicKeyFile,
    sign: (claims) =>
      new SignJWT({ exp: Math.floor(Date.now() / 1000) + 3600, ...claims })
        .setProtectedHeader({ alg: "ES256" })
        .sign(privateKey),
  };
}

/** Sends `authorization: <value>` on every call of a client. */
export function withAuthorization(value: string): grpc.Interceptor {
  return (options, next) =>
    new grpc.InterceptingCall(next(options), {
      start(metadata, listener, nextStart) {
        metadata.set("authorization", value);
        nextStart(metadata, listener);
      },
    });
}

/** Client options that send `Bearer <token>` on every call. */
export function bearer(token: string): grpc.ChannelOptions {
  return { interceptors: [withAuthorization(`Bearer ${token}`)] };
}

/**
 * A throw-away self-signed certificate for localhost and 127.0.0.1, made
 * with openssl in `dir`: `certFile`/`keyFile` for a server, `cert` and `key`
 * as PEM (the certificate is also the root a client trusts).
 */
export async function testCertificate(dir: string): Promise<{
  certFile: string;
  keyFile: string;
  cert: string;
  key: string;
}> {
  const certFile = `${dir}/cert.pem`;
  const keyFile = `${dir}/key.pem`;
  const out = await new Deno.Command("openssl", {
    args: [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:prime256v1",
      "-nodes",
      "-keyout",
      keyFile,
      "-out",
      certFile,
      "-days",
      "1",
      "-subj",
      "/CN=localhost",
      "-addext",
      "subjectAltName=DNS:localhost,IP:127.0.0.1",
      // rustls (Deno's TLS) refuses a CA certificate as the server's own.
      "-addext",
      "basicConstraints=critical,CA:FALSE",
    ],
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!out.success) {
    throw new Error(`openssl failed: ${new TextDecoder().decode(out.stderr)}`);
  }
  return {
    certFile,
    keyFile,
    cert: await Deno.readTextFile(certFile),
    key: await Deno.readTextFile(keyFile),
  };
}

/** A core serving TLS with a {@linkcode testCertificate}; `close()` removes it all. */
export async function startTlsCore(options: StartOptions = {}): Promise<{
  core: CoreServer;
  cert: string;
  key: string;
  close(): Promise<void>;
}> {
  const dir = await Deno.makeTempDir();
  const { certFile, keyFile, cert, key } = await testCertificate(dir);
  const core = await startCoreServer({
    port: 0,
    tlsCert: certFile,
    tlsKey: keyFile,
    ...options,
  });
  return {
    core,
    cert,
    key,
    async close() {
      await core.shutdown(500);
      await Deno.remove(dir, { recursive: true });
    },
  };
}
