/**
 * Starting the edge (`deno task serve:edge`, edge/main.ts) as a process:
 * --help, a bad flag, a bad value and a port in use, each one line on
 * stderr with the exit code the README promises.
 */
import assert from "node:assert/strict";
import { EDGE_SETTINGS } from "../edge/config.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const EDGE = ["run", "--allow-net", "--allow-env", "edge/main.ts"];
const decoder = new TextDecoder();
const lines = (text: string) => text.split("\n").filter((l) => l.trim());

async function run(args: string[]) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [...EDGE, ...args],
    cwd: ROOT,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(30_000),
  }).output();
  return {
    code: out.code,
    stdout: decoder.decode(out.stdout),
    stderr: decoder.decode(out.stderr),
  };
}

Deno.test("serve:edge --help lists every flag with its variable and exits 0", async () => {
  const r = await run(["--help"]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^Usage: deno task serve:edge \[flags\]/);
  for (const { flag, env } of Object.values(EDGE_SETTINGS)) {
    assert.match(r.stdout, new RegExp(`--${flag} +${env} `));
  }
});

Deno.test("serve:edge names a bad flag or value in one line and exits 2", async () => {
  for (
    const [args, message] of [
      [["--bogus"], "edge: Unknown option '--bogus' (see --help)"],
      [
        ["--port", "abc"],
        'edge: --port must be an integer from 0 to 65535, got "abc"',
      ],
    ] as const
  ) {
    const r = await run([...args]);
    assert.equal(r.code, 2);
    assert.deepEqual(lines(r.stderr), [message]);
  }
});

Deno.test("serve:edge with its port in use: one line, exit 2, no stack trace", async () => {
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (taken.addr as Deno.NetAddr).port;
  try {
    const r = await run(["--host", "127.0.0.1", "--port", String(port)]);
    assert.equal(r.code, 2);
    assert.deepEqual(lines(r.stderr), [
      `edge: port ${port} is in use (--port)`,
    ]);
  } finally {
    taken.close();
  }
});
