import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join, normalize } from "node:path";
import process from "node:process";
import { after, before, describe, test } from "./_test.ts";
import { fileURLToPath } from "node:url";
import { compareVersions, GLIBC_BASELINE, glibcVersionsNeeded } from "../scripts/build_prebuilt.ts";
import { checksumProblem, prebuiltPlatforms } from "../src/native/load.ts";
import { PREBUILT, type PrebuiltPlatform } from "../src/native/prebuilt.ts";
import { listSources, sha256, sourcesHash } from "../src/native/sources.ts";
import { runtime } from "../src/runtime/detect.ts";

const root = fileURLToPath(new URL("..", import.meta.url).href);
const native = join(root, "native");
const deno = join(root, "node_modules", ".bin", "deno");
const PLATFORMS = Object.keys(PREBUILT.libraries) as PrebuiltPlatform[];
const libPath = (p: PrebuiltPlatform) => join(native, "prebuilt", p, "librelaykit.so");

describe("prebuilt native libraries", { timeout: 30_000 }, () => {
  test("were built from the native sources as they are now", () => {
    assert.equal(
      sourcesHash(native, listSources(native)),
      PREBUILT.sources.sha256,
      'The native sources changed since the prebuilt libraries were built: run "deno run -A scripts/build_prebuilt.ts" and commit native/prebuilt/ and src/native/prebuilt.ts',
    );
    assert.deepEqual([...PREBUILT.sources.files], listSources(native));
  });

  test("the README's platform table gives each library's size as it is", () => {
    const readme = readFileSync(join(root, "README.md"), "utf8");
    for (const p of PLATFORMS) {
      const row = readme.split("\n").find((l) => l.includes(`native/prebuilt/${p}/`));
      assert.ok(row !== undefined, `README: no row for ${p}`);
      const size = PREBUILT.libraries[p].size.toLocaleString("en-US");
      // (a cell is padded to the widest size of the column)
      assert.match(row, new RegExp(`\\| +${size} +\\|`), `README: ${p} is ${size} bytes`);
    }
  });

  test("each has the SHA-256 and size recorded for it", () => {
    assert.deepEqual(PLATFORMS.sort(), [
      "linux-arm64-glibc",
      "linux-arm64-musl",
      "linux-x64-glibc",
      "linux-x64-musl",
    ]);
    for (const p of PLATFORMS) {
      const bytes = readFileSync(libPath(p));
      assert.equal(sha256(bytes), PREBUILT.libraries[p].sha256, p);
      assert.equal(bytes.length, PREBUILT.libraries[p].size, p);
      assert.equal(checksumProblem(p, bytes), undefined);
    }
  });

  test(`the glibc builds need no symbol version newer than GLIBC_${GLIBC_BASELINE}`, () => {
    for (const p of ["linux-x64-glibc", "linux-arm64-glibc"] as const) {
      const versions = glibcVersionsNeeded(libPath(p));
      assert.ok(versions.length > 0, `objdump -T found no GLIBC version in ${p}`);
      const newer = versions.filter((v) => compareVersions(v, GLIBC_BASELINE) > 0);
      assert.deepEqual(newer, [], `${p} needs ${newer.join(", ")}`);
    }
  });

  test("the musl builds need musl's libc.so alone, and are stripped", () => {
    for (const p of PLATFORMS) {
      const dyn = execFileSync("readelf", ["-d", "-S", "-W", libPath(p)], { encoding: "utf8" });
      const needed = [...dyn.matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) =>
        m[1]
      );
      assert.deepEqual(needed, p.endsWith("-musl") ? ["libc.so"] : ["libc.so.6"], p);
      assert.doesNotMatch(dyn, /\.symtab|\.debug_/, `${p} is not stripped`);
      if (p.endsWith("-musl")) assert.deepEqual(glibcVersionsNeeded(libPath(p)), []);
    }
  });

  test("a library whose SHA-256 differs is refused, naming both sums", () => {
    const bytes = new Uint8Array(readFileSync(libPath("linux-x64-glibc")));
    bytes[100] = bytes[100]! ^ 1;
    const problem = checksumProblem("linux-x64-glibc", bytes);
    assert.match(
      problem ?? "",
      /checksum mismatch: its SHA-256 is [0-9a-f]{64}, the linux-x64-glibc library's is/,
    );
    assert.ok(problem!.includes(PREBUILT.libraries["linux-x64-glibc"].sha256));
  });

  test("this platform is one with a prebuilt library, and its libc is known", () => {
    const plan = prebuiltPlatforms();
    assert.ok("platforms" in plan, JSON.stringify(plan));
    assert.ok(runtime.libc === "glibc" || runtime.libc === "musl");
    assert.deepEqual(plan.platforms, [`linux-${process.arch}-${runtime.libc}`]);
  });

  test("elsewhere, one line says why the stream engine runs and what would bring the native one", () => {
    const saved = {
      platform: Object.getOwnPropertyDescriptor(process, "platform")!,
      arch: Object.getOwnPropertyDescriptor(process, "arch")!,
    };
    const fake = (platform: string, arch: string) => {
      Object.defineProperty(process, "platform", { value: platform, configurable: true });
      Object.defineProperty(process, "arch", { value: arch, configurable: true });
      return prebuiltPlatforms();
    };
    try {
      const cases: [string, string, RegExp][] = [
        ["darwin", "arm64", /Linux-only .* this is macOS: run on Linux/],
        ["win32", "x64", /Linux-only .* this is Windows: run on Linux/],
        ["linux", "riscv64", /No prebuilt library for linux-riscv64 .*install a C compiler/],
      ];
      for (const [platform, arch, want] of cases) {
        const plan = fake(platform, arch);
        assert.ok("why" in plan, `${platform}-${arch}`);
        assert.match(plan.why, want);
        assert.doesNotMatch(plan.why, /\n/);
      }
    } finally {
      Object.defineProperty(process, "platform", saved.platform);
      Object.defineProperty(process, "arch", saved.arch);
    }
    assert.ok("platforms" in prebuiltPlatforms());
  });
});

/**
 * A static server over the checkout, standing in for JSR: /tampered/... is
 * the same tree with one bit of every .so flipped.
 */
function serve(host = "127.0.0.1"): Promise<Server> {
  const server = createServer((req, res) => {
    let path = decodeURIComponent(new URL(req.url ?? "/", "http://x").pathname);
    const tampered = path.startsWith("/tampered/");
    if (tampered) path = path.slice("/tampered".length);
    const file = join(root, normalize(path));
    if (!file.startsWith(root) || !existsSync(file)) {
      res.writeHead(404).end();
      return;
    }
    const bytes = readFileSync(file);
    if (tampered && file.endsWith(".so")) bytes[bytes.length - 1] = bytes[bytes.length - 1]! ^ 1;
    res.writeHead(200, {
      "content-type": file.endsWith(".ts") ? "application/typescript" : "application/octet-stream",
    }).end(bytes);
  });
  return new Promise((resolve) => server.listen(0, host, () => resolve(server)));
}

type Report = { engine: string; reason?: string; path?: string; ok: boolean };

describe("relaykit imported from an http URL (deno run)", { timeout: 60_000 }, () => {
  let server: Server;
  let port = 0;
  let tmp = "";
  before(async () => {
    server = await serve();
    port = (server.address() as AddressInfo).port;
    tmp = mkdtempSync(join(tmpdir(), "relaykit-url-"));
  });
  after(() => {
    server.close();
    rmSync(tmp, { recursive: true, force: true });
  });

  /** Run the fixture by URL with no compiler on PATH, a fresh DENO_DIR and the cache `cache`. */
  function run(url: string, cache: string, flags: string[]): Promise<Report> {
    const empty = join(tmp, "bin");
    mkdirSync(empty, { recursive: true });
    mkdirSync(cache, { recursive: true });
    const denoDir = mkdtempSync(join(tmp, "deno-dir-"));
    return new Promise((resolve, reject) => {
      const child = spawn(
        deno,
        ["run", "-q", `--allow-import=${new URL(url).host}`, ...flags, url],
        {
          env: { PATH: empty, HOME: tmp, DENO_DIR: denoDir, RELAYKIT_CACHE: cache, NO_COLOR: "1" },
          stdio: ["ignore", "pipe", "pipe"],
        },
      );
      let out = "", err = "";
      child.stdout.on("data", (d) => out += d);
      child.stderr.on("data", (d) => err += d);
      const timer = setTimeout(() => child.kill("SIGKILL"), 40_000);
      child.on("close", (code) => {
        clearTimeout(timer);
        try {
          resolve(JSON.parse(out.trim().split("\n").pop() ?? ""));
        } catch {
          reject(new Error(`deno run exited with ${code}: ${out}${err}`));
        }
      });
    });
  }
  const all = (cache: string) => [
    `--allow-net=127.0.0.1`,
    `--allow-read=${cache}`,
    `--allow-write=${cache}`,
    "--allow-env",
    "--allow-ffi",
  ];
  const fixture = () => `http://127.0.0.1:${port}/test/fixtures/url_engine.ts`;

  test("gets the native engine with no C compiler and an empty cache", async () => {
    const cache = join(tmp, "cache-1");
    const r = await run(fixture(), cache, all(cache));
    const sum = PREBUILT.libraries[`linux-${process.arch}-${runtime.libc}` as PrebuiltPlatform]
      .sha256;
    assert.deepEqual(r, { engine: "native", path: join(cache, sum, "librelaykit.so"), ok: true });
    assert.equal(sha256(readFileSync(r.path!)), sum);
  });

  test("refuses a tampered library from the server, saying why", async () => {
    const cache = join(tmp, "cache-2");
    const r = await run(
      `http://127.0.0.1:${port}/tampered/test/fixtures/url_engine.ts`,
      cache,
      all(cache),
    );
    assert.equal(r.engine, "stream");
    assert.match(
      r.reason ?? "",
      /librelaykit\.so: checksum mismatch: its SHA-256 is [0-9a-f]{64}, the linux-/,
    );
    // nothing was stored under the tampered file's sum
    assert.deepEqual(readdirSync(cache).filter((f) => /^[0-9a-f]{64}$/.test(f)), []);
  });

  test("refuses a tampered library in the cache and fetches it again", async () => {
    const cache = join(tmp, "cache-3");
    const sum = PREBUILT.libraries[`linux-${process.arch}-${runtime.libc}` as PrebuiltPlatform]
      .sha256;
    mkdirSync(join(cache, sum), { recursive: true });
    writeFileSync(join(cache, sum, "librelaykit.so"), "not the library");
    const r = await run(fixture(), cache, all(cache));
    assert.equal(r.engine, "native");
    assert.equal(sha256(readFileSync(join(cache, sum, "librelaykit.so"))), sum);
  });

  test("without network access to the server, the reason names --allow-net and the host", async () => {
    // served on ::1, while the fixture's own sockets are on 127.0.0.1
    const v6 = await serve("::1");
    try {
      const cache = join(tmp, "cache-4");
      const v6port = (v6.address() as AddressInfo).port;
      const r = await run(`http://[::1]:${v6port}/test/fixtures/url_engine.ts`, cache, all(cache));
      assert.equal(r.engine, "stream");
      assert.match(
        r.reason ?? "",
        new RegExp(`needs --allow-net=\\[::1\\]:${v6port} \\(run again`),
      );
    } finally {
      v6.close();
    }
  });
});
