/**
 * Starting the edge (`deno task serve:edge`, edge/main.ts) as a process:
 * --help, a bad flag, a bad value, a port in use and an unusable
 * certificate, key or CA file, each one line on stderr with the exit code
 * the README promises.
 */
import assert from "node:assert/strict";
import {
  DEFAULT_EDGE_CONFIG,
  EDGE_SETTINGS,
  type EdgeConfig,
} from "../edge/config.ts";
import { join } from "node:path";
import { testCertificate } from "./support/auth.ts";
import {
  lines,
  ROOT,
  runDeno,
  takenPort,
  withTempDir,
} from "./support/process.ts";

const EDGE = ["run", "--allow-net", "--allow-env", "edge/main.ts"];
const run = (args: string[]) => runDeno([...EDGE, ...args]);

Deno.test("README's edge configuration table has a row for every flag, with its variable and default", async () => {
  const readme = await Deno.readTextFile(join(ROOT, "README.md"));
  const section = readme.slice(readme.indexOf("### Edge configuration"));
  for (const [key, { flag, env }] of Object.entries(EDGE_SETTINGS)) {
    const row = section.split("\n").find((l) =>
      new RegExp(`^\\| [^|]*\`--${flag}\`[^|]*\\| [^|]*\`${env}\``).test(l)
    );
    assert.ok(row, `--${flag}`);
    const shown = String(DEFAULT_EDGE_CONFIG[key as keyof EdgeConfig]);
    if (shown !== "") {
      assert.ok(row.split("|")[3].trim().startsWith(`\`${shown}\``), row);
    }
  }
});

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
      [
        ["--port", "-1"],
        'edge: --port must be an integer from 0 to 65535, got "-1"',
      ],
      [
        ["--port=-1"],
        'edge: --port must be an integer from 0 to 65535, got "-1"',
      ],
      [
        ["--port", "--host", "127.0.0.1"],
        "edge: --port needs a value (see --help)",
      ],
    ] as const
  ) {
    const r = await run([...args]);
    assert.equal(r.code, 2);
    assert.deepEqual(lines(r.stderr), [message]);
  }
});

Deno.test("serve:edge with its port in use: one line, exit 2, no stack trace", async () => {
  using taken = takenPort();
  const r = await run(["--host", "127.0.0.1", "--port", String(taken.port)]);
  assert.equal(r.code, 2);
  assert.deepEqual(lines(r.stderr), [
    `edge: port ${taken.port} is in use (--port)`,
  ]);
});

Deno.test("serve:edge with a --host that does not resolve or is not this machine's: one line naming --host, exit 2, no stack trace", async () => {
  for (
    const [host, why] of [
      ["nosuchhost.invalid", /failed to lookup address information/],
      ["192.0.2.1", /not an address of this machine/],
    ] as const
  ) {
    const r = await run(["--host", host, "--port", "0"]);
    assert.equal(r.code, 2, `${host}: ${r.stderr}`);
    const err = lines(r.stderr);
    assert.equal(err.length, 1, r.stderr);
    assert.match(err[0], new RegExp(`^edge: cannot listen on ${host}:0: `));
    assert.match(err[0], why);
    assert.match(err[0], / \(--host\)$/);
  }
});

Deno.test("serve:edge with a certificate, key or CA file it cannot read or use: one line naming the flags, exit 2, no stack trace", async () => {
  await withTempDir(async (dir) => {
    await Deno.mkdir(join(dir, "a"));
    await Deno.mkdir(join(dir, "b"));
    const a = await testCertificate(join(dir, "a"));
    const b = await testCertificate(join(dir, "b"));
    const missing = join(dir, "missing.pem");
    const pair = (cert: string, key: string) =>
      `edge: --tls-cert (TLS_CERT) ${cert} and --tls-key (TLS_KEY) ${key} are not a certificate and its key: `;
    for (
      const [args, start] of [
        [
          ["--tls-cert", missing, "--tls-key", a.keyFile],
          `edge: cannot read --tls-cert (TLS_CERT) ${missing}: `,
        ],
        [
          ["--upstream", "https://localhost:1", "--upstream-ca", missing],
          `edge: cannot read --upstream-ca (UPSTREAM_CA) ${missing}: `,
        ],
        [
          ["--tls-cert", a.certFile, "--tls-key", b.keyFile],
          pair(
            a.certFile,
            b.keyFile,
          ),
        ],
        [
          ["--tls-cert", a.keyFile, "--tls-key", a.keyFile],
          pair(
            a.keyFile,
            a.keyFile,
          ),
        ],
      ] as const
    ) {
      const r = await runDeno([
        "run",
        "--allow-net",
        "--allow-env",
        `--allow-read=${dir}`,
        "edge/main.ts",
        "--port",
        "0",
        ...args,
      ]);
      assert.equal(r.code, 2, `${args}: ${r.stderr}`);
      assert.equal(lines(r.stderr).length, 1, r.stderr);
      assert.ok(r.stderr.startsWith(start), r.stderr);
    }
  });
});
