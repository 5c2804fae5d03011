/**
 * `deno task token --user U [--rooms a,b*] [--scope publish] [--ttl 1h]`:
 * prints an HS256 token signed with the core's secret (`--secret`, or
 * CHAT_JWT_SECRET), for development and tests. Issuer and audience follow
 * CHAT_JWT_ISSUER / CHAT_JWT_AUDIENCE unless given.
 */
import { parseArgs } from "node:util";
import { signDevToken } from "../../server/auth/dev_token.ts";

const USAGE =
  "usage: deno task token --user U [--rooms a,b*] [--scope publish|subscribe] [--ttl 1h] [--secret S] [--issuer I] [--audience A]";

let values;
try {
  ({ values } = parseArgs({
    args: Deno.args,
    options: {
      user: { type: "string" },
      rooms: { type: "string" },
      scope: { type: "string" },
      ttl: { type: "string", default: "1h" },
      secret: { type: "string" },
      issuer: { type: "string" },
      audience: { type: "string" },
    },
    strict: true,
    allowPositionals: false,
  }));
} catch (err) {
  console.error(`token: ${(err as Error).message}\n${USAGE}`);
  Deno.exit(2);
}
const secret = values.secret ?? Deno.env.get("CHAT_JWT_SECRET");
const fail = (message: string): never => {
  console.error(`token: ${message}\n${USAGE}`);
  Deno.exit(2);
};
if (!values.user) fail("--user is required");
if (!secret) fail("no secret: pass --secret or set CHAT_JWT_SECRET");
const ttl = values.ttl;
if (!/^\d+\s*(s|sec|secs|m|min|mins|h|hr|hrs|d|days?|w|weeks?)?$/.test(ttl)) {
  fail(`--ttl must look like 90, 30m, 1h or 7d, got "${ttl}"`);
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
