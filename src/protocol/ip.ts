/**
 * IP address text and bytes: pure helpers shared by the protocol code and
 * the engines.
 *
 * @module
 */

/** Whether `text` is an IPv4 dotted quad (no leading zeros). */
export function isIPv4(text: string): boolean {
  const parts = text.split(".");
  return parts.length === 4 &&
    parts.every((p) => /^(0|[1-9][0-9]{0,2})$/.test(p) && Number(p) <= 255);
}

/** The 16 bytes of an IPv6 address (with an optional IPv4 tail). */
export function ipv6Bytes(text: string): Uint8Array {
  const bad = () => new RangeError(`Bad IPv6 address "${text}"`);
  let t = text;
  if (t.includes(".")) {
    const i = t.lastIndexOf(":");
    const v4 = t.slice(i + 1);
    if (i < 0 || !isIPv4(v4)) throw bad();
    const q = v4.split(".").map(Number) as [number, number, number, number];
    t = `${t.slice(0, i + 1)}${((q[0] << 8) | q[1]).toString(16)}:${
      ((q[2] << 8) | q[3]).toString(16)
    }`;
  }
  const halves = t.split("::");
  if (halves.length > 2) throw bad();
  const head = halves[0] ? halves[0].split(":") : [];
  const rest = halves.length === 2 && halves[1] ? halves[1].split(":") : [];
  let groups = head;
  if (halves.length === 2) {
    const fill = 8 - head.length - rest.length;
    if (fill < 1) throw bad();
    groups = [...head, ...Array<string>(fill).fill("0"), ...rest];
  }
  if (groups.length !== 8 || groups.some((g) => !/^[0-9a-fA-F]{1,4}$/.test(g))) throw bad();
  const out = new Uint8Array(16);
  groups.forEach((g, i) => {
    const w = parseInt(g, 16);
    out[2 * i] = w >> 8;
    out[2 * i + 1] = w & 0xff;
  });
  return out;
}

/** RFC 5952 text of 16 IPv6 bytes. */
export function ipv6Text(b: Uint8Array): string {
  const g: string[] = [];
  for (let i = 0; i < 16; i += 2) g.push((((b[i] ?? 0) << 8) | (b[i + 1] ?? 0)).toString(16));
  let best = -1, bestLen = 1;
  for (let i = 0; i < 8;) {
    if (g[i] !== "0") {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === "0") j++;
    if (j - i > bestLen) [best, bestLen] = [i, j - i];
    i = j;
  }
  if (best < 0) return g.join(":");
  return `${g.slice(0, best).join(":")}::${g.slice(best + bestLen).join(":")}`;
}
