/**
 * The relaykit command's entry point. Runs as `deno run -A src/cli.ts …`,
 * `bun src/cli.ts …`, and as `relaykit …` from the npm package. The
 * commands live in src/cli/, one file each; their options are declared once
 * (src/cli/options.ts), and parsing, `--help` and suggestions derive from
 * the declarations.
 *
 *   relaykit forward --listen HOST:PORT --to HOST:PORT [options]
 *   relaykit run CONFIG | check CONFIG | demo | help [COMMAND] | ...
 *
 * @module
 */
import process from "node:process";
import { main } from "./cli/main.ts";

export { main } from "./cli/main.ts";
export { UsageError } from "./cli/options.ts";

if (import.meta.main) {
  const code = await main(process.argv.slice(2));
  if (code !== 0) process.exit(code);
}
