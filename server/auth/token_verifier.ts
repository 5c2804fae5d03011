/**
 * JWT verification with `jose` (no hand-written crypto): HS256 with a shared
 * secret and/or one public key (RS256, ES256 or EdDSA, picked from the key's
 * type), `iss` and `aud` when configured, `exp` and `nbf` with a small leeway.
 *
 * `exp` is required: a token without one would be accepted forever, and
 * the cache would keep it for the life of the process. There is no flag to
 * allow one; a long-lived token says so with a distant `exp`.
 *
 * Every failure is a ChatError UNAUTHENTICATED whose message says which
 * check failed, because "unauthenticated" alone sends an operator hunting
 * through clocks, keys and issuers.
 *
 * @module
 */
import { createPublicKey } from "node:crypto";
import {
  type CryptoKey,
  errors,
  importSPKI,
  type JWSHeaderParameters,
  type JWTPayload,
  jwtVerify,
} from "jose";
import { ChatError } from "../rooms/errors.ts";

/** What tokens are checked against. */
export interface TokenVerifierOptions {
  /** Shared secret for HS256. */
  secret?: string;
  /** PEM public key (SPKI) for RS256, ES256 or EdDSA. */
  publicKeyPem?: string;
  /** Required `iss`, when set. */
  issuer?: string;
  /** Required `aud` (one of), when set. */
  audience?: string;
  /** Clock skew accepted on `exp` and `nbf`, in seconds. */
  leewaySeconds: number;
}

/** UNAUTHENTICATED for a token, saying which check failed. */
export class TokenRejected extends ChatError {
  override name = "TokenRejected";

  /**
   * True when the same token may pass later (it is not valid yet); every
   * other failure is for good.
   */
  readonly passes: boolean;

  constructor(message: string, passes: boolean, cause: unknown) {
    super("unauthenticated", message, { cause });
    this.passes = passes;
  }
}

/** Verifies a compact JWT; resolves with its claims, rejects with TokenRejected. */
export type TokenVerifier = (token: string) => Promise<JWTPayload>;

/** Builds a verifier; throws a RangeError for an unusable key. */
export async function createTokenVerifier(
  options: TokenVerifierOptions,
): Promise<TokenVerifier> {
  const keys = new Map<string, CryptoKey | Uint8Array>();
  if (options.secret !== undefined) {
    keys.set("HS256", new TextEncoder().encode(options.secret));
  }
  if (options.publicKeyPem !== undefined) {
    for (const alg of algorithmsOf(options.publicKeyPem)) {
      keys.set(alg, await importPublicKey(options.publicKeyPem, alg));
    }
  }
  if (keys.size === 0) throw new RangeError("no JWT secret or public key");
  const algorithms = [...keys.keys()];
  const verifyOptions = {
    algorithms,
    issuer: options.issuer,
    audience: options.audience,
    clockTolerance: options.leewaySeconds,
    requiredClaims: ["exp"],
  };
  return async (token) => {
    try {
      const { payload } = await jwtVerify(
        token,
        // The allow-list above already refused any other algorithm.
        (header: JWSHeaderParameters) => keys.get(header.alg ?? "")!,
        verifyOptions,
      );
      return payload;
    } catch (err) {
      const notYet = err instanceof errors.JWTClaimValidationFailed &&
        err.claim === "nbf" && err.reason === "check_failed";
      throw new TokenRejected(reasonOf(err), notYet, err);
    }
  };
}

/**
 * `jose`'s key for `alg`. node:crypto (algorithmsOf) also reads an RSA
 * PKCS#1 key, a certificate or a private key, which jose's importSPKI
 * refuses with a TypeError: that is the operator's file, not a fault.
 */
async function importPublicKey(pem: string, alg: string): Promise<CryptoKey> {
  try {
    return await importSPKI(pem, alg);
  } catch (err) {
    throw new RangeError(
      `the JWT public key must be a "BEGIN PUBLIC KEY" (SPKI) PEM file, as \`openssl pkey -pubout\` writes: ${
        (err as Error).message
      }`,
    );
  }
}

/** The JWS algorithms a PEM public key serves. */
function algorithmsOf(pem: string): string[] {
  let key;
  try {
    key = createPublicKey(pem);
  } catch (err) {
    throw new RangeError(
      `the JWT public key is not a PEM public key: ${(err as Error).message}`,
    );
  }
  const type = key.asymmetricKeyType;
  if (type === "rsa") return ["RS256"];
  if (type === "ed25519") return ["EdDSA", "Ed25519"];
  if (
    type === "ec" && key.asymmetricKeyDetails?.namedCurve === "prime256v1"
  ) {
    return ["ES256"];
  }
  throw new RangeError(
    `the JWT public key must be RSA (RS256), EC P-256 (ES256) or Ed25519 (EdDSA), got ${type}${
      key.asymmetricKeyDetails?.namedCurve
        ? ` ${key.asymmetricKeyDetails.namedCurve}`
        : ""
    }`,
  );
}

/** Which check failed, in words a client can act on. */
function reasonOf(err: unknown): string {
  if (err instanceof errors.JWTExpired) return "token expired";
  if (err instanceof errors.JWTClaimValidationFailed) {
    if (err.reason === "missing") return `token has no ${err.claim}`;
    // A time claim that is no number (`"nbf": "tomorrow"`) is not a time
    // check that failed: jose says which claim and what it must be.
    if (err.reason === "invalid") return `malformed token: ${err.message}`;
    switch (err.claim) {
      case "nbf":
        return "token not yet valid (nbf)";
      case "iss":
        return "wrong token issuer";
      case "aud":
        return "wrong token audience";
      default:
        return `token claim ${err.claim} rejected: ${err.reason}`;
    }
  }
  if (err instanceof errors.JWSSignatureVerificationFailed) {
    return "bad token signature";
  }
  if (err instanceof errors.JOSEAlgNotAllowed) {
    return "token algorithm not allowed";
  }
  if (
    err instanceof errors.JWSInvalid || err instanceof errors.JWTInvalid ||
    err instanceof errors.JOSENotSupported
  ) {
    return `malformed token: ${(err as Error).message}`;
  }
  return "token rejected";
}
