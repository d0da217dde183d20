/**
 * The YAML side of the config file: where a node or a key path stands in
 * the text, and aliases and merge keys resolved under a bound.
 *
 * @module
 */
import {
  isAlias,
  isMap,
  isScalar,
  isSeq,
  LineCounter,
  type Pair,
  parseDocument,
  type YAMLMap,
} from "yaml";

/** A node of the parsed document (the yaml package's, or a plain value). */
export type Node = unknown;

/** Reports one mistake at `node`, under the key path `key`. */
export type At = (node: Node, key: string, message: string) => void;

/**
 * Where a key path ("listeners[1].port") is in a config text: its value's
 * line and column (1-based), or of its nearest parent that exists.
 */
export function locate(text: string, key: string): { line: number; col: number } {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc });
  let node: unknown = doc.contents;
  let found = node;
  for (const part of key.match(/[^.[\]]+/g) ?? []) {
    if (isSeq(node)) node = node.items[Number(part)];
    else if (isMap(node)) {
      node = (node as YAMLMap).items.find((p) => isScalar(p.key) && String(p.key.value) === part)
        ?.value;
    } else node = undefined;
    if (node === undefined || node === null) break;
    found = node;
  }
  const range = (found as { range?: [number, number, number] } | null)?.range;
  return lc.linePos(range?.[0] ?? 0);
}

/**
 * The most nodes that aliases may stand for in one config file, counting
 * each use of an anchor in full: a bound against files that expand without
 * end ("billion laughs": nine anchors, each aliasing the one before ten times).
 */
export const MAX_ALIAS_NODES = 10_000;

/**
 * `root` with every alias replaced by the node it names (the last anchor
 * of its name before it) and every merge key (`<<: *defaults`) replaced by
 * the pairs it brings that the mapping does not set itself. An alias with
 * no anchor before it, one inside its own anchor, and the alias at which
 * the aliases stand for more than MAX_ALIAS_NODES nodes are reported where
 * that alias is; then nothing is returned.
 */
export function resolveAliases(root: Node, at: At): Node {
  const anchors = new Map<string, Node>();
  const open = new Set<Node>(); // anchored nodes being walked
  const sizes = new Map<Node, number>();
  let expanded = 0;
  const size = (n: Node): number => {
    let k = sizes.get(n);
    if (k !== undefined) return k;
    k = 1;
    if (isMap(n)) { for (const p of n.items) k += size(p.key) + size(p.value); }
    else if (isSeq(n)) { for (const item of n.items) k += size(item); }
    sizes.set(n, k);
    return k;
  };
  class Refused extends Error {}
  const walk = (n: Node, where: string): Node => {
    if (isAlias(n)) {
      const target = anchors.get(n.source);
      const name = `*${n.source}`;
      if (target === undefined) {
        at(n, where, `alias ${name} has no anchor &${n.source} before it`);
        throw new Refused();
      }
      if (open.has(target)) {
        at(n, where, `alias ${name} is inside its own anchor`);
        throw new Refused();
      }
      expanded += size(target);
      if (expanded > MAX_ALIAS_NODES) {
        at(
          n,
          where,
          `aliases stand for more than ${MAX_ALIAS_NODES} nodes by alias ${name}; refused as a resource exhaustion attack`,
        );
        throw new Refused();
      }
      return target;
    }
    const anchor = (n as { anchor?: string } | null)?.anchor;
    if (anchor !== undefined) anchors.set(anchor, n);
    open.add(n);
    if (isSeq(n)) n.items = n.items.map((item, i) => walk(item, `${where}[${i}]`));
    if (isMap(n)) {
      let merges = false;
      for (const p of n.items) {
        const k = isScalar(p.key) ? String(p.key.value) : "";
        p.key = walk(p.key, where);
        p.value = walk(p.value, where ? `${where}.${k}` : k);
        merges ||= isScalar(p.key) && typeof p.key.value === "symbol";
      }
      if (merges) n.items = merged(n, where);
    }
    open.delete(n);
    return n;
  };
  /** A mapping's own pairs, then those its merge keys bring that it does not set. */
  const merged = (m: YAMLMap, where: string): Pair[] => {
    const isMerge = (p: Pair) => isScalar(p.key) && typeof p.key.value === "symbol";
    const out = m.items.filter((p) => !isMerge(p));
    const keyOf = (p: Pair) => isScalar(p.key) ? p.key.value : p.key;
    const seen = new Set(out.map(keyOf));
    for (const p of m.items.filter(isMerge)) {
      const sources = isSeq(p.value) ? p.value.items : [p.value];
      for (const src of sources) {
        if (!isMap(src)) {
          at(
            p.value,
            where ? `${where}.<<` : "<<",
            "a merge key (<<) takes a mapping or a list of mappings",
          );
          throw new Refused();
        }
        for (const q of (src as YAMLMap).items) {
          if (seen.has(keyOf(q))) continue;
          seen.add(keyOf(q));
          out.push(q);
        }
      }
    }
    return out;
  };
  try {
    return walk(root, "");
  } catch (err) {
    if (err instanceof Refused) return undefined;
    throw err;
  }
}
