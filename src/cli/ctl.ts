/**
 * `relaykit ctl`: the admin API from the command line, against a running
 * instance. Tables for people, `--json` for scripts (the API's own JSON).
 *
 *   relaykit ctl --admin 127.0.0.1:9901 servers
 *   relaykit ctl --admin 127.0.0.1:9901 drain app/a
 *   relaykit ctl --admin /run/relaykit-admin.sock conns --listener web --json
 *
 * @module
 */
import process from "node:process";
import { CTL_COMMANDS, ctlSend } from "../admin/ctl.ts";
import { TOKEN_ENV } from "../admin/serve.ts";
import { parseEndpoint } from "../types.ts";
import { type Command, flag, type Opt, text, UsageError } from "./options.ts";
import { suggest } from "./options.ts";

const AT = {
  flag: "--admin",
  value: "HOST:PORT|SOCKET",
  help: "the instance's admin endpoint (:PORT is loopback; a path is its Unix socket)",
  parse: (t: string, f: string) => parseEndpoint(t.startsWith(":") ? `127.0.0.1${t}` : t, f),
} satisfies Opt;
const TOKEN = text({
  flag: "--token",
  value: "TOKEN",
  help: `the admin token (default: ${TOKEN_ENV} from the environment)`,
});
const JSON_OUT = flag({ flag: "--json", help: "print the API's JSON answer instead of a table" });
const WORKER = text({ flag: "--worker", value: "N", help: "close: the worker the id is on" });

/** The filters of `conns`, each an option named as its query parameter. */
const FILTERS = (["listener", "server", "client", "offset", "limit"] as const).map((k) =>
  [
    k,
    text({
      flag: `--${k}`,
      value: { listener: "L", server: "B/S", client: "TEXT", offset: "N", limit: "N" }[k],
      help: `conns: ${
        {
          listener: "only this listener's",
          server: "only those to this server",
          client: "only clients whose address contains TEXT",
          offset: "skip the first N",
          limit: "at most N (a page)",
        }[k]
      }`,
    }),
  ] as const
);

const width = Math.max(...CTL_COMMANDS.map((c) => [c.name, ...c.args].join(" ").length)) + 2;

/** The command. */
export const ctl: Command = {
  name: "ctl",
  summary: "act on a running instance through its admin endpoint",
  usage: "--admin HOST:PORT|SOCKET [--token T] [--json] COMMAND [ARGS]",
  about: `Commands:\n\n${
    CTL_COMMANDS.map((c) => `  ${[c.name, ...c.args].join(" ").padEnd(width)}${c.help}`).join("\n")
  }\n\nExit code 1 when the instance refuses or fails an action, 2 for a usage mistake.`,
  preformatted: true,
  positional: ["COMMAND", "[ARG]", "[ARG]"],
  options: [AT, TOKEN, JSON_OUT, ...FILTERS.map(([, o]) => o), WORKER],
  run(a) {
    const [word, ...args] = a.positional;
    const c = CTL_COMMANDS.find((x) => x.name === word);
    if (c === undefined) {
      const near = suggest(word!, CTL_COMMANDS.map((x) => x.name));
      throw new UsageError(
        `ctl: unknown command "${word}"${near ? ` (did you mean ${near}?)` : ""} ` +
          "(see relaykit ctl --help)",
      );
    }
    if (args.length !== c.args.length) {
      throw new UsageError(`usage: relaykit ctl ${[c.name, ...c.args].join(" ")}`);
    }
    const filters = Object.fromEntries(
      FILTERS.filter(([, o]) => a.has(o)).map(([k, o]) => [k, a.get(o)!]),
    );
    const misplaced = [
      ...(c.name === "conns" ? [] : FILTERS.filter(([, o]) => a.has(o)).map(([, o]) => o.flag)),
      ...(c.name === "close" || !a.has(WORKER) ? [] : [WORKER.flag]),
    ];
    if (misplaced.length > 0) {
      throw new UsageError(`ctl ${c.name} takes no ${misplaced.join(", ")}`);
    }
    const worker = a.get(WORKER);
    let req;
    try {
      req = c.request(args, { filters, ...(worker !== undefined ? { worker } : {}) });
    } catch (err) {
      throw new UsageError((err as Error).message);
    }
    const token = a.get(TOKEN) ?? process.env[TOKEN_ENV];
    return ctlSend(a.need(AT), req, {
      ...(token !== undefined ? { token } : {}),
      json: a.has(JSON_OUT),
    });
  },
};
