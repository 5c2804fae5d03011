/**
 * `deno task serve` (tools/serve/main.ts) as a process: --help, bad flags
 * and values as one line with exit 2, the banner printed once both the core
 * and the edge listen (and what it names answers), Ctrl-C stopping both,
 * and a port in use on either side stopping both with exit 2 and no banner.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { createChatClient } from "../client/rpc.ts";
import { lines, ROOT, runDeno, takenPort } from "./support/process.ts";

const SERVE = [
  "run",
  "--allow-net",
  "--allow-env",
  "--allow-run",
  "--allow-read",
  "tools/serve/main.ts",
];
const run = (args: string[]) => runDeno([...SERVE, ...args]);

Deno.test("serve --help lists its flags and exits 0", async () => {
  const r = await run(["--help"]);
  assert.equal(r.code, 0, r.stderr);
  for (const flag of ["--host", "--core-port", "--port", "--metrics-port"]) {
    assert.match(r.stdout, new RegExp(`^  ${flag} `, "m"));
  }
});

Deno.test("README's Tasks row for deno task serve names every flag serve --help lists", async () => {
  const r = await run(["--help"]);
  const flags = [...r.stdout.matchAll(/^ {2}(--[a-z-]+)/gm)].map((m) => m[1]);
  assert.ok(flags.length >= 10, r.stdout);
  const readme = await Deno.readTextFile(join(ROOT, "README.md"));
  const row = readme.split("\n").find((l) =>
    l.startsWith("| `deno task serve` ")
  );
  assert.ok(row, "no Tasks row for deno task serve");
  // A `|` in a cell ends it: the row must stay one row of two cells.
  assert.equal(row.split("|").length, 4, row);
  for (const flag of flags) {
    assert.match(row, new RegExp(`(?<![\\w-])${flag}(?![\\w-])`), flag);
  }
});

Deno.test("serve names a bad flag or value in one line and exits 2", async () => {
  for (
    const [args, message] of [
      [["--bogus"], "serve: Unknown option '--bogus' (see --help)"],
      [
        ["--core-port", "abc"],
        'serve: --core-port must be an integer from 0 to 65535, got "abc"',
      ],
      [
        ["--port", "70000"],
        'serve: --port must be an integer from 0 to 65535, got "70000"',
      ],
      [
        ["--metrics-port", "x"],
        'serve: --metrics-port must be an integer from 0 to 65535 or "off", got "x"',
      ],
      [
        ["--core-port", "65535", "--cores", "3"],
        "serve: --core-port 65535 leaves no room for 3 cores on consecutive ports (the last would be 65537; at most 65535)",
      ],
      [
        ["--core-port", "0", "--metrics-port", "65534", "--cores", "3"],
        "serve: --metrics-port 65534 leaves no room for 3 cores on consecutive ports (the last would be 65536; at most 65535)",
      ],
      [
        ["--port", "-1"],
        'serve: --port must be an integer from 0 to 65535, got "-1"',
      ],
      [
        ["--port", "--host", "127.0.0.1"],
        "serve: --port needs a value (see --help)",
      ],
    ] as const
  ) {
    const r = await run([...args]);
    assert.equal(r.code, 2, `${args}`);
    assert.deepEqual(lines(r.stderr), [message]);
    assert.equal(r.stdout, "");
  }
  // A bad value from the environment names the variable, not the flag.
  const r = await runDeno([...SERVE], { LOG_FORMAT: "off" });
  assert.equal(r.code, 2);
  assert.deepEqual(lines(r.stderr), [
    'serve: LOG_FORMAT must be text or json, got "off"',
  ]);
});

/**
 * `deno task serve` on free ports with `args`, read up to its banner;
 * disposing kills it.
 */
async function serveUntilBanner(
  args: string[],
  banner: RegExp = /Ctrl-C stops both/,
) {
  const child = new Deno.Command(Deno.execPath(), {
    args: [...SERVE, "--core-port", "0", "--port", "0", ...args],
    cwd: ROOT,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const run = {
    child,
    stderr,
    /** stdout so far. */
    out: "",
    /** Reads stdout to its end (once the process is stopping). */
    async drain() {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        run.out += value;
      }
    },
    async [Symbol.asyncDispose]() {
      // Ctrl-C first: serve stops the core and the edge it started. A
      // SIGKILL alone would leave them running (holding the data directory
      // and the ports for the tests after, as after a failed assertion).
      let timer: ReturnType<typeof setTimeout> | undefined;
      try {
        child.kill("SIGINT");
        await Promise.race([
          child.status,
          new Promise((r) => timer = setTimeout(r, 5000)),
        ]);
      } catch { /* exited */ }
      clearTimeout(timer);
      try {
        child.kill("SIGKILL");
      } catch { /* exited */ }
      await child.status;
      await reader.cancel().catch(() => {});
      await stderr;
    },
  };
  try {
    while (!banner.test(run.out)) {
      const { value, done } = await reader.read();
      if (done) {
        throw new Error(`serve ended early:\n${run.out}\n${await stderr}`);
      }
      run.out += value;
    }
  } catch (err) {
    await run[Symbol.asyncDispose]();
    throw err;
  }
  return run;
}

Deno.test("serve prints the banner once the core and the edge listen, and Ctrl-C stops both", async () => {
  await using run = await serveUntilBanner(["--metrics-port", "0"]);
  const at = (label: string) =>
    run.out.match(new RegExp(`${label}:\\s+(\\S+)`))![1];
  const coreAt = at("core \\(gRPC, h2c\\)");
  const edgeAt = at("edge \\(gRPC-Web/Connect\\)");
  const metricsAt = at("metrics \\(Prometheus\\)");
  // The banner comes after both listening lines, and names real ports.
  const banner = run.out.indexOf("core (gRPC, h2c)");
  assert.ok(run.out.indexOf("[core]") < banner);
  assert.ok(run.out.search(/\[edge\] edge: listening on/) < banner, run.out);
  assert.match(coreAt, /^127\.0\.0\.1:[1-9]\d*$/);
  const client = createChatClient(coreAt);
  try {
    const res = await client.sendMessage({
      user: "u",
      room: "r",
      content: "c",
    });
    assert.match(res.messageId, /^msg_\d+$/);
  } finally {
    client.close();
  }
  const page = await fetch(`${edgeAt}/`);
  assert.equal(page.status, 200);
  assert.match(await page.text(), /<html/i);
  const metrics = await fetch(metricsAt);
  assert.match(
    await metrics.text(),
    /grpc_server_handled_total\{[^}]*SendMessage[^}]*grpc_code="OK"\} 1/,
  );
  run.child.kill("SIGINT");
  const status = await run.child.status;
  await run.drain();
  assert.equal(status.code, 0, run.out + (await run.stderr));
  assert.match(run.out, /\[core\] .*core stopped/);
  assert.match(run.out, /\[edge\] edge: stopped/);
});

Deno.test("serve --log-format json: every line of serve, the supervisor, the core and the edge is one JSON object naming its process; the banner is one too, with URLs that answer", async () => {
  await using run = await serveUntilBanner(
    ["--metrics-port", "0", "--log-format", "json"],
    /"msg":"ready"/,
  );
  const ready = lines(run.out).map((l) => JSON.parse(l)).find((r) =>
    r.msg === "ready"
  );
  assert.equal(ready.component, "serve");
  assert.match(ready.cores[0], /^127\.0\.0\.1:[1-9]\d*$/);
  const metrics = await fetch(ready.metrics[0]);
  assert.equal(metrics.status, 200, ready.metrics[0]);
  await metrics.body?.cancel();
  const page = await fetch(ready.page);
  assert.equal(page.status, 200);
  await page.body?.cancel();
  run.child.kill("SIGINT");
  assert.equal((await run.child.status).code, 0);
  await run.drain();
  const all = [...lines(run.out), ...lines(await run.stderr)];
  const records = all.map((line) => {
    try {
      return JSON.parse(line);
    } catch {
      assert.fail(`not JSON: ${line}`);
    }
  });
  for (const r of records) {
    const line = JSON.stringify(r);
    assert.ok(typeof r.time === "string" && typeof r.level === "string", line);
    assert.ok(r.component === "serve" || r.process !== undefined, line);
  }
  const processes = new Set(records.map((r) => r.process));
  assert.ok(
    processes.has("core") && processes.has("edge"),
    JSON.stringify([...processes]),
  );
  // The supervisor's own lines come through the core's output.
  assert.ok(records.some((r) => r.component === "supervisor"));
});

Deno.test("serve --edge-procs 2 runs two edge processes on the edge's port, and Ctrl-C stops them", async () => {
  await using run = await serveUntilBanner([
    "--metrics-port",
    "off",
    "--edge-procs",
    "2",
  ]);
  const edgeAt = run.out.match(/edge \(gRPC-Web\/Connect\):\s+(\S+)/)![1];
  // Each scrape on a connection of its own; both processes answer some.
  const pids = new Set<string>();
  for (let i = 0; i < 200 && pids.size < 2; i++) {
    const client = Deno.createHttpClient({ poolMaxIdlePerHost: 0 });
    try {
      const text = await (await fetch(`${edgeAt}/metrics`, { client })).text();
      pids.add(text.match(/^chat_edge_process_id (\d+)$/m)![1]);
    } finally {
      client.close();
    }
  }
  assert.equal(pids.size, 2);
  run.child.kill("SIGINT");
  const status = await run.child.status;
  await run.drain();
  assert.equal(status.code, 0, run.out + (await run.stderr));
  assert.equal(run.out.match(/\[edge\] edge: stopped/g)?.length, 2, run.out);
});

Deno.test("serve with the core's port in use: one line, exit 2, no edge, no banner", async () => {
  using taken = takenPort();
  const r = await run([
    "--core-port",
    String(taken.port),
    "--port",
    "0",
    "--metrics-port",
    "off",
  ]);
  assert.equal(r.code, 2, r.stdout + r.stderr);
  assert.ok(
    lines(r.stderr).includes(
      `[core] core: port ${taken.port} is in use (--port)`,
    ),
    r.stderr,
  );
  assert.doesNotMatch(
    r.stdout + r.stderr,
    /\[edge\]|Ctrl-C stops both|^\s+at /m,
  );
});

Deno.test("serve with the edge's port in use: one line, the core is stopped, exit 2, no banner", async () => {
  using taken = takenPort();
  const r = await run([
    "--core-port",
    "0",
    "--port",
    String(taken.port),
    "--metrics-port",
    "off",
  ]);
  assert.equal(r.code, 2, r.stdout + r.stderr);
  assert.ok(
    lines(r.stderr).includes(
      `[edge] edge: port ${taken.port} is in use (--port)`,
    ),
    r.stderr,
  );
  assert.match(r.stdout, /\[core\] .*core stopped/);
  assert.doesNotMatch(r.stdout + r.stderr, /Ctrl-C stops both|^\s+at /m);
});
