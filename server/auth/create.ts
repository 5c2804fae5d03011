/**
 * Builds the core's {@linkcode Access} from its config, and says once at
 * start-up whether calls need a token.
 *
 * @module
 */
import {
  ConfigError,
  CORE_SETTINGS,
  type CoreConfig,
  readSettingFile,
} from "../config.ts";
import type { Logger } from "../log.ts";
import { Access } from "./access.ts";
import { createAuthenticator } from "./authenticator.ts";
import { ConcurrencyLimit } from "../../limits/concurrency_limit.ts";
import { RateLimiter } from "../../limits/rate_limiter.ts";
import { createTokenVerifier } from "./token_verifier.ts";

/** Reads the public key file (if any) and builds the access rules. */
export async function createAccess(
  config: Readonly<CoreConfig>,
  log: Logger,
): Promise<Access> {
  const keyed = config.jwtSecret !== "" || config.jwtPublicKey !== "";
  const per = keyed ? "user" : "connection";
  const limits = [
    config.rateLimit > 0
      ? `${config.rateLimit} messages/s (burst ${
        config.rateBurst || config.rateLimit
      }) per ${per}`
      : "",
    config.maxSubscriptions > 0
      ? `${config.maxSubscriptions} subscriptions per ${per}`
      : "",
  ].filter((s) => s !== "");
  if (limits.length > 0) log.info(`limits: ${limits.join(", ")}`);
  const rateLimit = config.rateLimit > 0
    ? new RateLimiter({
      ratePerSecond: config.rateLimit,
      burst: config.rateBurst || config.rateLimit,
    })
    : undefined;
  const maxSubscriptions = config.maxSubscriptions > 0
    ? new ConcurrencyLimit(config.maxSubscriptions)
    : undefined;
  if (!keyed) {
    log.info(
      "auth: off, anyone who reaches this port may post as any user " +
        "(set --jwt-secret or --jwt-public-key to require tokens)",
    );
    return new Access({ rateLimit, maxSubscriptions });
  }
  const publicKeyPem = config.jwtPublicKey
    ? await readSettingFile("jwtPublicKey", config.jwtPublicKey)
    : undefined;
  let verify;
  try {
    verify = await createTokenVerifier({
      secret: config.jwtSecret || undefined,
      publicKeyPem,
      issuer: config.jwtIssuer || undefined,
      audience: config.jwtAudience || undefined,
      leewaySeconds: config.jwtLeewaySeconds,
    });
  } catch (err) {
    // An unusable key file stops start-up as a bad value does (exit 2),
    // not as a crash the supervisor would restart forever.
    if (!(err instanceof RangeError)) throw err;
    const { flag, env } = CORE_SETTINGS.jwtPublicKey;
    throw new ConfigError(
      `--${flag} (${env}) ${config.jwtPublicKey}: ${err.message}`,
    );
  }
  log.info(
    `auth: JWT bearer tokens required (${
      [
        config.jwtSecret ? "HS256 secret" : "",
        config.jwtPublicKey ? `public key ${config.jwtPublicKey}` : "",
        config.jwtIssuer ? `issuer ${config.jwtIssuer}` : "",
        config.jwtAudience ? `audience ${config.jwtAudience}` : "",
      ].filter((s) => s !== "").join(", ")
    })`,
  );
  return new Access({
    authenticate: createAuthenticator({
      verify,
      leewaySeconds: config.jwtLeewaySeconds,
      maxVerifying: config.jwtMaxVerifying || Infinity,
    }),
    leewaySeconds: config.jwtLeewaySeconds,
    rateLimit,
    maxSubscriptions,
  });
}
