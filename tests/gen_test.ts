import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));

Deno.test("gen/ is what `deno task gen` makes from proto/ (regenerate and commit if this fails)", async () => {
  const out = await Deno.makeTempDir({ prefix: "chat-gen-" });
  try {
    const run = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "npm:@bufbuild/buf@1.74.0",
        "generate",
        "--output",
        out,
      ],
      cwd: root,
      // buf starts the plugin as `deno ...`: make sure it finds this deno.
      env: {
        PATH: `${dirname(Deno.execPath())}:${Deno.env.get("PATH") ?? ""}`,
      },
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(run.code, 0, new TextDecoder().decode(run.stderr));
    for (const file of ["chat_pb.ts", "grpc/health/v1/health_pb.ts"]) {
      const fresh = await Deno.readTextFile(join(out, "gen", file));
      const committed = await Deno.readTextFile(join(root, "gen", file));
      assert.equal(
        committed,
        fresh,
        `gen/${file} is stale: run \`deno task gen\``,
      );
    }
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});
