/**
 * The hook rows of scripts/bench.ts: bulk (iperf3) through a relaykit
 * TcpProxy with no hook, a pass-through hook and NosyProxy's rewriting
 * hooks (scripts/bench/hook_proxy.ts), per engine and runtime, in the same
 * run; and the targets they are held to.
 *
 * Rows, all matched by `--only 'relaykit-*-hook'`:
 *   relaykit-{native,stream}-{deno,bun}-no-hook       the reference
 *   relaykit-{native,stream}-{deno,bun}-hook          pass-through hook
 *   relaykit-native-{deno,bun}-lent-hook              the same, lend: true
 *                                                     (the stream engine
 *                                                     gives chunks either way)
 *   relaykit-{native,stream}-{deno,bun}-rewrite-hook  NosyProxy's hooks
 *
 * @module
 */

/** The runtimes and engines the rows cover. */
const RUNTIMES = ["deno", "bun"] as const;
const ENGINES = ["native", "stream"] as const;
/** Row suffix and hook_proxy.ts mode. */
const MODES = [
  ["no-hook", "none"],
  ["hook", "pass"],
  ["lent-hook", "pass-lent"],
  ["rewrite-hook", "rewrite"],
] as const;

/** A row in the shape of bench.ts's proxy table. */
export interface HookRow {
  name: string;
  needs: "deno" | "bun";
  argv: (listenPort: number, targetPort: number) => string[];
  compareTo: string[];
  /** Bulk only: hooks change what moves, not how connections open. */
  workloads: "bulk"[];
  /** Measured in each of --rounds rounds, alternating with the other hook rows; medians. */
  rounds: true;
}

/** The row name for a runtime, engine and mode suffix. */
function rowName(rt: string, engine: string, suffix: string): string {
  return `relaykit-${engine}-${rt}-${suffix}`;
}

/** The hook rows, with each runtime's binary. */
export function hookRows(bins: { deno: string | null; bun: string | null }): HookRow[] {
  const rows: HookRow[] = [];
  for (const rt of RUNTIMES) {
    for (const [suffix, mode] of MODES) {
      for (const engine of ENGINES) {
        if (mode === "pass-lent" && engine === "stream") continue;
        const compareTo = suffix === "no-hook" ? [] : [
          rowName(rt, "native", "no-hook"),
          ...(engine === "native"
            ? [rowName(rt, "stream", suffix === "lent-hook" ? "hook" : suffix)]
            : []),
        ];
        rows.push({
          name: rowName(rt, engine, suffix),
          needs: rt,
          argv: (l, t) => [
            bins[rt]!,
            ...(rt === "deno" ? ["run", "-A"] : []),
            "scripts/bench/hook_proxy.ts",
            `${l}`,
            `${t}`,
            engine,
            mode,
          ],
          compareTo,
          workloads: ["bulk"],
          rounds: true,
        });
      }
    }
  }
  return rows;
}

/** One target of a runtime, checked against the rows of one run. */
export interface HookTarget {
  runtime: string;
  what: string;
  ratio: number | null;
  want: number;
  met: boolean | null;
}

/**
 * The hook targets ("a pass-through hook on the native engine keeps ≥ 0.5×
 * of the no-hook native bulk and ≥ 1.0× the stream engine with the same
 * hook") and, without a target, the rewriting hook against the stream
 * engine's; with the lines that report them.
 */
export function hookTargets(
  results: { name: string; status: string; bulkGbps: number | null }[],
): { targets: HookTarget[]; lines: string[] } {
  const gbps = (name: string) => {
    const r = results.find((x) => x.name === name);
    return r?.status === "ok" ? r.bulkGbps : null;
  };
  const targets: HookTarget[] = [];
  const check = (runtime: string, what: string, row: string, peer: string, want: number) => {
    const a = gbps(row), b = gbps(peer);
    const ratio = a !== null && b !== null && b > 0 ? a / b : null;
    targets.push({ runtime, what, ratio, want, met: ratio === null ? null : ratio >= want });
  };
  for (const rt of RUNTIMES) {
    const native = (s: string) => rowName(rt, "native", s);
    const stream = (s: string) => rowName(rt, "stream", s);
    check(rt, "native pass-through hook / native no hook", native("hook"), native("no-hook"), 0.5);
    check(
      rt,
      "native pass-through hook / stream pass-through hook",
      native("hook"),
      stream("hook"),
      1,
    );
    check(
      rt,
      "native pass-through hook, lent / native no hook",
      native("lent-hook"),
      native("no-hook"),
      0.5,
    );
    check(
      rt,
      "native pass-through hook, lent / stream pass-through hook",
      native("lent-hook"),
      stream("hook"),
      1,
    );
    check(
      rt,
      "native rewrite hook / stream rewrite hook",
      native("rewrite-hook"),
      stream("rewrite-hook"),
      0,
    );
  }
  const measured = targets.filter((t) => t.ratio !== null);
  const lines = measured.length === 0 ? [] : [
    "hook targets (bulk Gbit/s ratios in this run):",
    ...measured.map((t) =>
      `  ${t.runtime}: ${t.what} = ${t.ratio!.toFixed(2)}x` +
      (t.want > 0
        ? ` (want >= ${t.want.toFixed(1)}x: ${t.met ? "met" : "NOT met"})`
        : " (no target)")
    ),
  ];
  return { targets, lines };
}
