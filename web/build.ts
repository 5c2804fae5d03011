/**
 * Bundles the page and writes `gen/web_assets.ts`, which embeds it as strings
 * (edge/assets.ts serves them).
 *
 * The edge must read no files at run time (Deno Deploy serves the module
 * graph, not the folder), so HTML, CSS and the bundled JS become string
 * constants with a content hash for the ETag. `--check` rebuilds in memory and
 * exits 1 if the committed file differs, which `tests/web_assets_test.ts` runs.
 *
 * @example
 * ```sh
 * deno task build:web           # rewrite gen/web_assets.ts
 * deno task build:web --check   # fail if it is stale
 * ```
 *
 * @module
 */

const ROOT = new URL("../", import.meta.url);
const OUT = new URL("gen/web_assets.ts", ROOT);

/** Runs deno with `args`, feeding `stdin`; throws with its stderr if it fails. */
async function deno(args: string[], stdin?: string): Promise<string> {
  const child = new Deno.Command(Deno.execPath(), {
    args,
    cwd: ROOT,
    stdin: stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  if (stdin !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(stdin));
    await writer.close();
  }
  const { success, stdout, stderr } = await child.output();
  if (!success) {
    throw new Error(
      `deno ${args[0]} failed:\n${new TextDecoder().decode(stderr)}`,
    );
  }
  return new TextDecoder().decode(stdout);
}

async function etag(body: string): Promise<string> {
  const digest = await crypto.subtle.digest(
    "SHA-256",
    new TextEncoder().encode(body),
  );
  const hex = Array.from(
    new Uint8Array(digest),
    (b) => b.toString(16).padStart(2, "0"),
  );
  return `"${hex.join("").slice(0, 20)}"`;
}

/** Builds the source text of `gen/web_assets.ts` from `web/`. */
export async function renderAssetsModule(): Promise<string> {
  const read = (path: string) => Deno.readTextFile(new URL(path, ROOT));
  const files: [string, string, string][] = [
    ["/", "text/html; charset=utf-8", await read("web/index.html")],
    ["/app.css", "text/css; charset=utf-8", await read("web/style.css")],
    ["/favicon.svg", "image/svg+xml", await read("web/favicon.svg")],
    [
      "/app.js",
      "text/javascript; charset=utf-8",
      await deno([
        "bundle",
        "--platform",
        "browser",
        "--minify",
        "web/main.ts",
      ]),
    ],
  ];
  const entries: string[] = [];
  for (const [path, contentType, body] of files) {
    entries.push(
      `  ${JSON.stringify(path)}: {\n    contentType: ${
        JSON.stringify(contentType)
      },\n` +
        `    etag: ${JSON.stringify(await etag(body))},\n    body: ${
          JSON.stringify(body)
        },\n  },`,
    );
  }
  const template = await Deno.readTextFile(
    new URL("assets_template.ts", import.meta.url),
  );
  const source = template.replace("/* ASSETS */", entries.join("\n"));
  return deno(["fmt", "--ext=ts", "-"], source);
}

if (import.meta.main) {
  const fresh = await renderAssetsModule();
  if (Deno.args.includes("--check")) {
    const current = await Deno.readTextFile(OUT).catch(() => "");
    if (current !== fresh) {
      console.error(
        "gen/web_assets.ts is stale: run `deno task build:web` and commit it.",
      );
      Deno.exit(1);
    }
    console.log("gen/web_assets.ts is up to date.");
  } else {
    await Deno.writeTextFile(OUT, fresh);
    console.log(`wrote gen/web_assets.ts (${fresh.length} bytes)`);
  }
}
