/**
 * Starting the core as an operator does, as processes: `server/main.ts` and
 * `deno task serve:core` (supervisor/main.ts) with --help, a bad flag, a bad
 * value and a port in use; and --log-format json. Asserts on stdout, stderr
 * and exit codes: one line naming the problem, exit 2, no stack trace, no
 * restart loop.
 */
import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { join } from "node:path";
import { CORE_SETTINGS } from "../server/config.ts";
import { FrameBuilder } from "../server/store/log_format.ts";
import { segmentName } from "../server/store/log_files.ts";
import { testCertificate } from "./support/auth.ts";
import {
  lines,
  ROOT,
  runDeno as run,
  takenPort,
  withTempDir,
} from "./support/process.ts";

const CORE = [
  "run",
  "--allow-net",
  "--allow-env",
  // node_modules: the health and reflection .proto files; data: the
  // history store's directory.
  "--allow-read=node_modules,data",
  "--allow-write=data",
  "--allow-sys=uid",
  "server/main.ts",
];
const SUPERVISED = ["run", "--allow-run", "--allow-env", "supervisor/main.ts"];

Deno.test("README's core configuration table has a row for every flag, with its variable", async () => {
  const readme = await Deno.readTextFile(join(ROOT, "README.md"));
  for (const { flag, env } of Object.values(CORE_SETTINGS)) {
    assert.match(
      readme,
      new RegExp(`^\\| [^|]*\`--${flag}\`[^|]*\\| [^|]*\`${env}\``, "m"),
      `--${flag}`,
    );
  }
});

for (
  const [name, cmd] of [["server/main.ts", CORE], [
    "serve:core",
    SUPERVISED,
  ]] as const
) {
  Deno.test(`${name} --help lists every flag and exits 0`, async () => {
    const r = await run([...cmd, "--help"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^Usage: deno task serve:core \[flags\]/);
    for (const { flag, env } of Object.values(CORE_SETTINGS)) {
      assert.match(r.stdout, new RegExp(`--${flag} +${env} `));
    }
    assert.match(r.stdout, /--metrics-port +CHAT_METRICS_PORT +off /);
  });

  Deno.test(`${name} names an unknown flag in one line and exits 2`, async () => {
    const r = await run([...cmd, "--bogus"]);
    assert.equal(r.code, 2);
    assert.deepEqual(lines(r.stderr), [
      "core: Unknown option '--bogus' (see --help)",
    ]);
    assert.equal(r.stdout, "");
  });

  Deno.test(`${name} names a bad value in one line and exits 2`, async () => {
    const r = await run([...cmd, "--metrics-port", "http"]);
    assert.equal(r.code, 2);
    assert.deepEqual(lines(r.stderr), [
      'core: --metrics-port must be an integer from 0 to 65535 or "off", got "http"',
    ]);
  });

  Deno.test(`${name} names a negative value's flag and range in one line and exits 2`, async () => {
    // node:util parseArgs calls `--flag -1` "ambiguous" in three sentences.
    for (const args of [["--history-size", "-1"], ["--history-size=-1"]]) {
      const r = await run([...cmd, ...args]);
      assert.equal(r.code, 2, `${args}`);
      assert.deepEqual(lines(r.stderr), [
        'core: --history-size must be an integer from 0 to 1000000, got "-1"',
      ]);
      assert.equal(r.stdout, "");
    }
  });

  Deno.test(`${name} names a flag followed by another flag instead of a value in one line and exits 2`, async () => {
    const r = await run([...cmd, "--port", "--store", "memory"]);
    assert.equal(r.code, 2);
    assert.deepEqual(lines(r.stderr), [
      "core: --port needs a value (see --help)",
    ]);
    assert.equal(r.stdout, "");
  });
}

Deno.test("server/main.ts: a certificate or key file that is not there is one line naming the flag, and exit 2", async () => {
  for (
    const [args, flag] of [
      [
        ["--tls-cert", "/nonexistent/c.pem", "--tls-key", "/nonexistent/k.pem"],
        "tls-cert",
      ],
      [["--jwt-public-key", "/nonexistent/pub.pem"], "jwt-public-key"],
    ] as const
  ) {
    const r = await run([...CORE, "--port", "0", ...args]);
    assert.equal(r.code, 2, r.stderr);
    const errors = lines(r.stderr).filter((l) => l.startsWith("core: "));
    assert.equal(errors.length, 1, r.stderr);
    assert.match(
      errors[0],
      new RegExp(
        `^core: cannot read --${flag} \\(\\w+\\) /nonexistent/\\S+\\.pem: `,
      ),
    );
    assert.doesNotMatch(r.stderr, /Uncaught|at async/);
  }
});

/**
 * The core on a free port with the memory store, also allowed to read
 * `dir` (where a test put the files a flag names).
 */
const coreReading = (dir: string) => [
  ...CORE.map((a) => a.startsWith("--allow-read=") ? `${a},${dir}` : a),
  "--port",
  "0",
  "--store",
  "memory",
];

Deno.test("server/main.ts: a --jwt-public-key file that is no usable public key is one line naming the flag, and exit 2", async () => {
  await withTempDir(async (dir) => {
    const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 });
    const p384 = generateKeyPairSync("ec", { namedCurve: "P-384" });
    const files = {
      // What `openssl rsa -RSAPublicKey_out` writes: node:crypto reads it,
      // jose does not.
      "pkcs1.pem": rsa.publicKey.export({ type: "pkcs1", format: "pem" }),
      // The signer's private key given by mistake.
      "private.pem": rsa.privateKey.export({ type: "pkcs8", format: "pem" }),
      "p384.pem": p384.publicKey.export({ type: "spki", format: "pem" }),
    };
    for (const [name, pem] of Object.entries(files)) {
      const path = join(dir, name);
      await Deno.writeTextFile(path, String(pem));
      const r = await run([
        ...coreReading(dir),
        "--jwt-public-key",
        path,
      ]);
      assert.equal(r.code, 2, `${name}: ${r.stderr}`);
      assert.deepEqual(lines(r.stderr).length, 1, r.stderr);
      assert.match(
        r.stderr,
        new RegExp(
          `^core: --jwt-public-key \\(CHAT_JWT_PUBLIC_KEY\\) ${path}: the JWT public key `,
        ),
      );
      assert.doesNotMatch(r.stderr, /Uncaught|at async/);
    }
  });
});

Deno.test("server/main.ts: a --tls-cert/--tls-key pair that TLS cannot use is one line naming both flags, and exit 2", async () => {
  await withTempDir(async (dir) => {
    await Deno.mkdir(join(dir, "a"));
    await Deno.mkdir(join(dir, "b"));
    const a = await testCertificate(join(dir, "a"));
    const b = await testCertificate(join(dir, "b"));
    for (
      const [cert, key] of [
        [a.certFile, b.keyFile], // not a pair
        [a.keyFile, a.keyFile], // no certificate
        [a.certFile, a.certFile], // no key
      ]
    ) {
      const r = await run([
        ...coreReading(dir),
        "--tls-cert",
        cert,
        "--tls-key",
        key,
      ]);
      assert.equal(r.code, 2, `${cert} ${key}: ${r.stderr}`);
      const errors = lines(r.stderr).filter((l) => l.startsWith("core: "));
      assert.equal(errors.length, 1, r.stderr);
      assert.ok(
        errors[0].startsWith(
          `core: --tls-cert (CHAT_TLS_CERT) ${cert} and --tls-key (CHAT_TLS_KEY) ${key} are not a certificate and its key: `,
        ),
        errors[0],
      );
      assert.doesNotMatch(r.stderr, /Uncaught|at async/);
    }
  });
});

Deno.test("server/main.ts: a port in use is one line and exit 2, on both transports and for --metrics-port", async () => {
  using taken = takenPort();
  for (
    const args of [
      ["--port", String(taken.port)],
      ["--port", String(taken.port), "--transport", "node"],
      ["--port", "0", "--metrics-port", String(taken.port)],
    ]
  ) {
    const r = await run([...CORE, ...args]);
    assert.equal(r.code, 2, `${args}: ${r.stderr}`);
    const flag = args.includes("--metrics-port") ? "--metrics-port" : "--port";
    assert.deepEqual(lines(r.stderr), [
      `core: port ${taken.port} is in use (${flag})`,
    ]);
  }
});

Deno.test("server/main.ts and serve:core: a --host that does not resolve or is not this machine's is one line naming --host, exit 2, no restart", async () => {
  for (const cmd of [CORE, SUPERVISED]) {
    for (
      const [host, why] of [
        ["nosuchhost.invalid", /failed to lookup address information/],
        ["192.0.2.1", /not an address of this machine/],
      ] as const
    ) {
      const r = await run([...cmd, "--port", "0", "--host", host]);
      assert.equal(r.code, 2, `${host}: ${r.stderr}`);
      const err = lines(r.stderr).filter((l) => !/^supervisor: /.test(l));
      assert.equal(err.length, 1, r.stderr);
      assert.match(err[0], new RegExp(`^core: cannot listen on ${host}:0: `));
      assert.match(err[0], why);
      assert.match(err[0], / \(--host\)$/);
      assert.doesNotMatch(r.stderr, /Uncaught|restarted|^\s+at /m);
    }
  }
});

Deno.test("serve:core: a core whose port is in use is not restarted; the supervisor exits 2", async () => {
  using taken = takenPort();
  const t0 = performance.now();
  const r = await run([...SUPERVISED, "--port", String(taken.port)]);
  assert.equal(r.code, 2, r.stderr);
  const err = lines(r.stderr);
  assert.ok(
    err.includes(`core: port ${taken.port} is in use (--port)`),
    r.stderr,
  );
  assert.equal(err.filter((l) => /restarted/.test(l)).length, 0, r.stderr);
  assert.equal(err.filter((l) => /^\s+at /.test(l)).length, 0, r.stderr);
  assert.ok(performance.now() - t0 < 15_000);
});

/**
 * A core's stdout up to "listening on", then SIGTERM and the rest of it; a
 * core that never says it is sent SIGTERM after `giveUpMs`.
 */
async function outputAroundStop(
  child: Deno.ChildProcess,
  giveUpMs = 15_000,
): Promise<string> {
  const giveUp = setTimeout(() => child.kill("SIGTERM"), giveUpMs);
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  while (!/listening on/.test(seen)) {
    const { value, done } = await reader.read();
    if (done) break;
    seen += value;
  }
  clearTimeout(giveUp);
  child.kill("SIGTERM");
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    seen += value;
  }
  return seen;
}

Deno.test("serve:core --log-level error still says where it listens (the supervisor and deno task serve wait for it), and nothing else", async () => {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      ...SUPERVISED,
      "--port",
      "0",
      "--metrics-port",
      "0",
      "--store",
      "memory",
      "--log-level",
      "error",
    ],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  // Before, the line never came: given up after 15 s rather than hang.
  const seen = await outputAroundStop(child);
  await child.status;
  await child.stderr.cancel();
  const out = lines(seen);
  assert.equal(out.length, 2, seen);
  assert.match(out[0], /core metrics on http:\/\/127\.0\.0\.1:\d+\/metrics$/);
  assert.match(out[1], /core listening on 127\.0\.0\.1:\d+ \(h2c\)$/);
});

Deno.test("server/main.ts --log-format json writes one JSON object per lifecycle line", async () => {
  const child = new Deno.Command(Deno.execPath(), {
    args: [...CORE, "--port", "0", "--log-format", "json"],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const seen = await outputAroundStop(child);
  const status = await child.status;
  await child.stderr.cancel();
  assert.equal(status.code, 0);
  const records = lines(seen).map((l) => JSON.parse(l));
  assert.ok(records.length >= 4, seen);
  for (const r of records) {
    assert.equal(r.component, "core");
    assert.equal(r.level, "info");
    assert.ok(!Number.isNaN(Date.parse(r.time)), r.time);
  }
  const msgs = records.map((r) => r.msg as string);
  assert.ok(
    msgs.some((m) => /^listening on 127\.0\.0\.1:\d+ \(h2c\)$/.test(m)),
    seen,
  );
  assert.ok(msgs.includes("SIGTERM received"), seen);
  assert.ok(msgs.includes("health: NOT_SERVING (shutting down)"), seen);
  assert.equal(msgs.at(-1), "stopped");
});

/**
 * `deno task serve:core --log-format json` in `dataDir` until it listens,
 * then SIGTERM; every line it wrote, stdout and stderr apart.
 */
async function supervisedJsonRun(dataDir: string) {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      ...SUPERVISED,
      "--port",
      "0",
      "--log-format",
      "json",
      "--data-dir",
      dataDir,
    ],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  const stdout = await outputAroundStop(child);
  const status = await child.status;
  return { code: status.code, stdout, stderr: await stderr };
}

/** Each line of `text` as JSON, failing on the first that is not. */
function records(text: string): Record<string, string>[] {
  return lines(text).map((l) => {
    try {
      return JSON.parse(l);
    } catch {
      throw new assert.AssertionError({ message: `not JSON: ${l}\n${text}` });
    }
  });
}

Deno.test("serve:core --log-format json: the supervisor's lines and the history store's warnings are JSON too", async () => {
  const dataDir = await Deno.makeTempDir();
  try {
    const first = await supervisedJsonRun(dataDir);
    assert.equal(first.code, 0, first.stderr);
    const out = records(first.stdout);
    const err = records(first.stderr);
    assert.ok(out.some((r) => /^listening on /.test(r.msg)), first.stdout);
    const supervisor = err.filter((r) => r.component === "supervisor");
    assert.deepEqual(
      supervisor.map((r) => r.msg.replace(/\d+/g, "N")),
      [
        "started child pid N",
        "SIGTERM received, forwarding to the core",
        "child exited (code N) after stop",
      ],
    );
    for (const r of supervisor) {
      assert.equal(r.level, "info");
      assert.ok(!Number.isNaN(Date.parse(r.time)), r.time);
    }

    // A write cut short at the log's end: the store cuts it off and warns.
    const file = join(dataDir, segmentName(1));
    const frame = new FrameBuilder();
    frame.message(1, 3, Date.now(), new Uint8Array(100));
    await Deno.writeFile(file, frame.finish().subarray(0, 50), {
      append: true,
    });
    const second = await supervisedJsonRun(dataDir);
    assert.equal(second.code, 0, second.stderr);
    records(second.stdout);
    const warnings = records(second.stderr).filter((r) => r.level === "warn");
    assert.equal(warnings.length, 1, second.stderr);
    assert.equal(warnings[0].component, "core");
    assert.match(warnings[0].msg, /^history: .*: cut off 50 bytes at byte /);
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("server/main.ts --log-format json: a port in use is one JSON line, exit 2", async () => {
  using taken = takenPort();
  const r = await run([
    ...CORE,
    "--port",
    String(taken.port),
    "--log-format",
    "json",
  ]);
  assert.equal(r.code, 2, r.stderr);
  const [line, ...more] = records(r.stderr);
  assert.deepEqual(more, []);
  assert.equal(line.level, "error");
  assert.equal(line.msg, `port ${taken.port} is in use (--port)`);
});
