/**
 * `deno task token --user U [--rooms a,b*] [--scope publish] [--ttl 1h]`:
 * prints an HS256 token signed with the core's secret (`--secret`, or
 * CHAT_JWT_SECRET), for development and tests. Issuer and audience follow
 * CHAT_JWT_ISSUER / CHAT_JWT_AUDIENCE unless given.
 *
 * It refuses what no core would accept (a secret under 32 bytes, a ttl that
 * is already over, a blank or over-long user, a user the server speaks as,
 * a malformed room pattern) rather than print a token that fails on first
 * use. A
 * bad flag or value is one line and exit 2, as for the other tasks.
 */
import { parseArgs } from "node:util";
import { isServerUser } from "../../auth/claims.ts";
import { signDevToken } from "../../auth/dev_token.ts";
import { hs256SecretError, MIN_HS256_SECRET_BYTES } from "../../auth/secret.ts";
import { argsErrorLine } from "../../config/args_error.ts";
import { joinNegativeValues } from "../../config/negative_values.ts";
import { compileRoomPatterns } from "../../server/auth/room_patterns.ts";
import { MAX_NAME_LENGTH } from "../../server/rooms/validate.ts";

const USAGE =
  `usage: deno task token --user U [--rooms a,b*] [--scope publish|subscribe] [--ttl 1h] [--secret S] [--issuer I] [--audience A]
Prints an HS256 token for a core started with the same --jwt-secret.
  --user U        the token's user (its sub); required
  --rooms a,b*    rooms it may use: names or prefix* patterns (default: every room)
  --scope S       publish, subscribe or both (default: both)
  --ttl T         lifetime: seconds, or 30m, 1h, 7d; more than 0 (default 1h)
  --secret S      HS256 secret, at least ${MIN_HS256_SECRET_BYTES} bytes (default $CHAT_JWT_SECRET)
  --issuer I      iss claim (default $CHAT_JWT_ISSUER)
  --audience A    aud claim (default $CHAT_JWT_AUDIENCE)`;

const fail: (message: string) => never = (message) => {
  console.error(`token: ${message} (see deno task token --help)`);
  Deno.exit(2);
};

const options = {
  user: { type: "string" },
  rooms: { type: "string" },
  scope: { type: "string" },
  ttl: { type: "string", default: "1h" },
  secret: { type: "string" },
  issuer: { type: "string" },
  audience: { type: "string" },
  help: { type: "boolean", short: "h" },
} as const;
let values;
try {
  ({ values } = parseArgs({
    args: joinNegativeValues(Deno.args, options),
    options,
    strict: true,
    allowPositionals: false,
  }));
} catch (err) {
  fail(argsErrorLine(err));
}
if (values.help) {
  console.log(USAGE);
  Deno.exit(0);
}
const secret = values.secret ?? Deno.env.get("CHAT_JWT_SECRET");
if (!values.user || values.user.trim() === "") fail("--user is required");
if (values.user!.length > MAX_NAME_LENGTH) {
  fail(`--user must be at most ${MAX_NAME_LENGTH} characters`);
}
if (isServerUser(values.user!)) {
  // The core refuses it: its lines would pass for the server's.
  fail(`--user "${values.user}" is reserved for the server's own lines`);
}
if (!secret) fail("no secret: pass --secret or set CHAT_JWT_SECRET");
// Every core refuses a shorter secret at start-up: a token signed with one
// could never be checked.
const short = hs256SecretError(
  values.secret !== undefined ? "--secret" : "CHAT_JWT_SECRET",
  secret!,
);
if (short !== undefined) fail(short);
const ttl = values.ttl;
const ttlForm = /^(\d+)\s*(s|sec|secs|m|min|mins|h|hr|hrs|d|days?|w|weeks?)?$/
  .exec(ttl);
if (ttlForm === null || Number(ttlForm[1]) === 0) {
  // 0 (or a negative number) would print a token already expired.
  fail(`--ttl must be more than 0, like 90, 30m, 1h or 7d, got "${ttl}"`);
}
const scope = values.scope?.split(/[ ,]+/).filter((s) => s !== "").join(" ");
if (
  scope !== undefined &&
  !/^(publish|subscribe)( (publish|subscribe))?$/.test(scope)
) {
  fail(`--scope must be publish, subscribe or both, got "${values.scope}"`);
}
const rooms = values.rooms?.split(",").map((r) => r.trim()).filter((r) =>
  r !== ""
);
if (rooms !== undefined) {
  // An empty list would allow no room at all; leave --rooms out for every room.
  if (rooms.length === 0) {
    fail(
      "--rooms must name a room or a prefix* pattern (omit it for every room)",
    );
  }
  try {
    compileRoomPatterns(rooms);
  } catch (err) {
    fail(`--rooms: ${(err as Error).message}`);
  }
}
console.log(
  await signDevToken({
    secret: secret!,
    user: values.user!,
    rooms,
    scope,
    ttl: /^\d+$/.test(ttl) ? Number(ttl) : ttl,
    issuer: values.issuer ?? Deno.env.get("CHAT_JWT_ISSUER"),
    audience: values.audience ?? Deno.env.get("CHAT_JWT_AUDIENCE"),
  }),
);
