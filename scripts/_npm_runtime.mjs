// A runtime published on npm (Bun's and Node's per-platform packages),
// fetched at test time with `npm pack` and unpacked once into
// ~/.cache/relaykit-test-runtimes: not a devDependency, since a package for
// one platform would break `npm ci` on the others.
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, renameSync, rmSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import process from "node:process";

/** Where the runtimes are kept between runs. */
export const runtimeCache = join(
  process.env.XDG_CACHE_HOME ?? join(homedir(), ".cache"),
  "relaykit-test-runtimes",
);

/**
 * The path of `binPath` in package `name@version`, fetched and unpacked
 * first unless the cache has it. Throws (with npm's or tar's reason) when
 * the fetch fails or takes longer than `timeout` ms.
 */
// deno-lint-ignore explicit-module-boundary-types -- plain JavaScript, run by Node
export function npmRuntime(name, version, binPath, timeout = 300_000) {
  const dir = join(runtimeCache, `${name.replace(/[@/]/g, "_")}-${version}`);
  const bin = join(dir, "package", binPath);
  if (existsSync(bin)) return bin;
  mkdirSync(runtimeCache, { recursive: true });
  // unpacked beside the cache entry and renamed into place: an interrupted
  // fetch leaves no half-unpacked runtime behind
  const work = mkdtempSync(`${dir}.partial-`);
  try {
    let tgz;
    try {
      tgz = execFileSync("npm", ["pack", "--loglevel", "error", `${name}@${version}`], {
        cwd: work,
        encoding: "utf8",
        timeout,
        stdio: ["ignore", "pipe", "pipe"],
      }).trim().split("\n").pop();
    } catch (err) {
      const why = err.signal === "SIGTERM"
        ? `no answer within ${timeout / 1000} s`
        : String(err.stderr ?? "").split("\n").filter((l) => /error/.test(l)).slice(0, 2).join(" ");
      throw new Error(`cannot fetch ${name}@${version} with npm pack: ${why || err.message}`, {
        cause: err,
      });
    }
    execFileSync("tar", ["-xzf", tgz], { cwd: work, timeout: 120_000 });
    rmSync(join(work, tgz));
    if (!existsSync(join(work, "package", binPath))) {
      throw new Error(`${name}@${version} has no ${binPath}`);
    }
    rmSync(dir, { recursive: true, force: true });
    renameSync(work, dir);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  return bin;
}
