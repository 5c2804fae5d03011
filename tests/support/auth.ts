/**
 * Test support for auth: tokens the tests sign themselves (HS256 and ES256),
 * a grpc-js interceptor that sends one, and a TLS certificate (with its own
 * CA) made with the openssl CLI.
 */
import * as grpc from "@grpc/grpc-js";
import { exportSPKI, generateKeyPair, type JWTPayload, SignJWT } from "jose";

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

async function openssl(args: string[]): Promise<void> {
  const out = await new Deno.Command("openssl", {
    args,
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!out.success) {
    throw new Error(`openssl failed: ${new TextDecoder().decode(out.stderr)}`);
  }
}

/**
 * A private CA and a certificate it signed for localhost and 127.0.0.1, in
 * `dir` (rustls refuses a self-signed CA certificate as a server's own).
 * `ca` is the PEM to trust; `certFile` and `keyFile` are for the server.
 */
export async function testCertificate(dir: string): Promise<{
  certFile: string;
  keyFile: string;
  ca: string;
}> {
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
  await openssl([
    "req",
    "-x509",
    ...ec,
    "-keyout",
    `${dir}/ca.key`,
    "-out",
    `${dir}/ca.pem`,
    "-days",
    "1",
    "-subj",
    "/CN=chat-grpc test CA",
  ]);
  await openssl([
    "req",
    ...ec,
    "-keyout",
    `${dir}/key.pem`,
    "-out",
    `${dir}/leaf.csr`,
    "-subj",
    "/CN=localhost",
  ]);
  await Deno.writeTextFile(
    `${dir}/leaf.ext`,
    "basicConstraints=CA:FALSE\n" +
      "subjectAltName=DNS:localhost,IP:127.0.0.1\n" +
      "extendedKeyUsage=serverAuth\n",
  );
  await openssl([
    "x509",
    "-req",
    "-in",
    `${dir}/leaf.csr`,
    "-CA",
    `${dir}/ca.pem`,
    "-CAkey",
    `${dir}/ca.key`,
    "-CAcreateserial",
    "-out",
    `${dir}/cert.pem`,
    "-days",
    "1",
    "-extfile",
    `${dir}/leaf.ext`,
  ]);
  return {
    certFile: `${dir}/cert.pem`,
    keyFile: `${dir}/key.pem`,
    ca: await Deno.readTextFile(`${dir}/ca.pem`),
  };
}
