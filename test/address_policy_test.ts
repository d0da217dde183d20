/**
 * The address policy: normalisation and matching (tables), and end to end
 * every spelling of this host through SOCKS5, SOCKS4, SOCKS4a, HTTP CONNECT
 * and a tunnel OPEN is refused on the wire while the local service sees no
 * connection; allowed destinations still work. On both engines.
 */
import assert from "node:assert/strict";
import net from "node:net";
import { after, before, describe, test } from "./_test.ts";
import {
  Access,
  type AccessRule,
  classifyHost,
  httpConnectRouter,
  normalizeAddress,
  type RouteConnection,
  socksRouter,
  TcpProxy,
  TunnelClient,
  type TunnelClientEvents,
  TunnelServer,
} from "../mod.ts";
import { ipv6Bytes } from "../src/protocol/ip.ts";
import { callsOf } from "../src/native/engine.ts";
import { engineRouterOf } from "../src/proxy/socks.ts";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { concat, ENGINES, freePort, nativeEngine, startCli, waitFor } from "./_helpers.ts";

// ---------------------------------------------------------------------------
// normalisation

// [what a client sent, canonical address | "name:<name>" | "invalid", this host?]
const SPELLINGS: [string, string, boolean?][] = [
  ["127.0.0.1", "127.0.0.1"],
  ["0", "0.0.0.0", true],
  ["0.0.0.0", "0.0.0.0", true],
  ["0.1.2.3", "0.1.2.3", true],
  ["::", "::", true],
  ["[::]", "::", true],
  ["::0.0.0.0", "::", true],
  ["::ffff:0.0.0.0", "0.0.0.0", true],
  ["::ffff:127.0.0.1", "127.0.0.1"],
  ["::FFFF:7F00:1", "127.0.0.1"],
  ["[::ffff:7f00:1]", "127.0.0.1"],
  ["::127.0.0.1", "127.0.0.1"],
  ["::7f00:1", "127.0.0.1"],
  ["::2", "0.0.0.2", true],
  ["::1", "::1"],
  ["0:0:0:0:0:0:0:1", "::1"],
  ["2001:DB8::1", "2001:db8::1"],
  ["0x7f.1", "127.0.0.1"],
  ["0X7F.1", "127.0.0.1"],
  ["0x7f000001", "127.0.0.1"],
  ["2130706433", "127.0.0.1"],
  ["127.1", "127.0.0.1"],
  ["127.0.1", "127.0.0.1"],
  ["017700000001", "127.0.0.1"],
  ["0177.0.0.1", "127.0.0.1"],
  ["0x7f.0.0.0x1", "127.0.0.1"],
  ["127.0.0.1.", "127.0.0.1"],
  ["１２７.０.０.１", "127.0.0.1"],
  ["1.2.65535", "1.2.255.255"],
  ["localhost", "name:localhost"],
  ["LOCALHOST", "name:localhost"],
  ["LocalHost.", "name:localhost"],
  ["WWW.Example.COM.", "name:www.example.com"],
  ["ｗｗｗ.example.com", "name:www.example.com"],
  ["_srv.example.com", "name:_srv.example.com"],
  ["::1%lo", "invalid"],
  ["::1%1", "invalid"],
  ["fe80::1%eth0", "invalid"],
  ["127.0.0.1%00", "invalid"],
  ["%31%32%37.0.0.1", "invalid"],
  ["127.0.0.1\0.example.com", "invalid"],
  ["127.0.0.1 ", "invalid"],
  [" 127.0.0.1", "invalid"],
  ["localhost\n", "invalid"],
  ["08.0.0.1", "invalid"],
  ["0x", "invalid"],
  ["0x.1", "invalid"],
  ["4294967296", "invalid"],
  ["1.2.3.256", "invalid"],
  ["0x100.1", "invalid"],
  ["1.2.3.4.5", "invalid"],
  ["foo.123", "invalid"],
  ["foo..example", "invalid"],
  ["", "invalid"],
  [".", "invalid"],
  ["[127.0.0.1]", "invalid"],
  ["::ffff:127.1", "invalid"],
  ["1::2::3", "invalid"],
  ["a".repeat(64) + ".example", "invalid"],
];

describe("address policy: normalisation", () => {
  test("every spelling normalises to one canonical form, or is refused", { timeout: 5000 }, () => {
    for (const [input, want, thisHost = false] of SPELLINGS) {
      const c = classifyHost(input);
      const got = "address" in c
        ? [c.address.text, c.address.thisHost]
        : "name" in c
        ? [`name:${c.name}`, false]
        : ["invalid", false];
      assert.deepEqual(got, [want, thisHost], JSON.stringify(input));
      const a = normalizeAddress(input);
      assert.equal(a?.text, "address" in c ? want : undefined, JSON.stringify(input));
    }
  });

  test("a name keeps its trailing dot for the resolver only", { timeout: 5000 }, () => {
    assert.deepEqual(classifyHost("Db.Internal."), { name: "db.internal", query: "db.internal." });
    assert.deepEqual(classifyHost("db.internal"), { name: "db.internal", query: "db.internal" });
  });
});

// ---------------------------------------------------------------------------
// matching

// ---------------------------------------------------------------------------
// one table, two implementations: the TypeScript policy (Access) and the C
// tables of the native engine's routers (native/src/router.c)

/** How a policy decided: "invalid", "address TEXT THISHOST allowed|refused", "name NAME [dotted] allowed ADDRESS|refused". */
type Check = (
  allow: AccessRule[],
  deny: AccessRule[],
  host: string,
  port: number,
  resolved: string[],
) => Promise<string>;

// deno-lint-ignore no-control-regex -- ASCII test
const NOT_ASCII = /[^\x00-\x7f]/;

const POLICIES: [string, Check][] = [
  ["TypeScript", async (allow, deny, host, port, resolved) => {
    const c = classifyHost(host);
    if ("invalid" in c) return "invalid";
    const r = await new Access(allow, deny).admit(host, port, () => Promise.resolve(resolved));
    if ("address" in c) {
      const a = c.address;
      return `address ${a.text} ${a.thisHost ? 1 : 0} ${"refused" in r ? "refused" : "allowed"}`;
    }
    const dotted = c.query.endsWith(".") ? " dotted" : "";
    return `name ${c.name}${dotted} ${"address" in r ? `allowed ${r.address.text}` : "refused"}`;
  }],
  ["C", (allow, deny, host, port, resolved) => {
    const router = engineRouterOf(socksRouter({ allow, deny }))!;
    const got = callsOf(nativeEngine()).routerCheck(router, host, port, resolved);
    // a host that is not ASCII needs IDNA: the C router hands it to TypeScript
    return Promise.resolve(got === "defer" && NOT_ASCII.test(host) ? "ts" : got);
  }],
];

/** [allow, deny, host, port, resolved, decision] */
const MATCHES: [AccessRule[], AccessRule[], string, number, string[], string][] = [
  // loopback denied: no spelling of this host
  ...[
    ["127.0.0.1", "127.0.0.1 0"],
    ["127.9.9.9", "127.9.9.9 0"],
    ["0", "0.0.0.0 1"],
    ["0.1.2.3", "0.1.2.3 1"],
    ["::", ":: 1"],
    ["::1", "::1 0"],
    ["::ffff:0.0.0.0", "0.0.0.0 1"],
    ["::127.0.0.1", "127.0.0.1 0"],
    ["::2", "0.0.0.2 1"],
    ["0x7f.1", "127.0.0.1 0"],
    ["017700000001", "127.0.0.1 0"],
    ["[::1]", "::1 0"],
    ["10.1.2.3", "10.1.2.3 0", "allowed"],
  ].map(([h, a, v = "refused"]): [AccessRule[], AccessRule[], string, number, string[], string] => [
    [{ port: 9001 }],
    [{ cidr: ["127.0.0.0/8", "::1/128"] }],
    h!,
    9001,
    [],
    `address ${a} ${v}`,
  ]),
  [[{ port: 9001 }], [{ cidr: "127.0.0.0/8" }], "::1%lo", 9001, [], "invalid"],
  // a deny of either loopback covers the unspecified addresses
  [[{ port: 1 }], [{ cidr: "127.0.0.1/32" }], "::", 1, [], "address :: 1 refused"],
  [[{ port: 1 }], [{ cidr: "::1/128" }], "0.0.0.7", 1, [], "address 0.0.0.7 1 refused"],
  // only a rule naming them reaches the unspecified addresses
  [[{ port: 1 }], [], "0.0.0.0", 1, [], "address 0.0.0.0 1 refused"],
  [[{ host: "*" }], [], "0.0.0.0", 1, [], "address 0.0.0.0 1 refused"],
  [[{ cidr: "0.0.0.0/0" }], [], "0.0.0.0", 1, [], "address 0.0.0.0 1 refused"],
  [[{ cidr: "0.0.0.0/0" }], [], "10.0.0.1", 1, [], "address 10.0.0.1 0 allowed"],
  [[{ cidr: "::/0" }], [], "::", 1, [], "address :: 1 refused"],
  [[{ cidr: "0.0.0.0/8" }], [], "0.9.9.9", 1, [], "address 0.9.9.9 1 allowed"],
  [[{ cidr: "0.0.0.0/32" }], [], "::ffff:0.0.0.0", 1, [], "address 0.0.0.0 1 allowed"],
  [[{ cidr: "0.0.0.0/32" }], [], "::", 1, [], "address :: 1 refused"],
  [[{ cidr: "::/128" }], [], "::", 1, [], "address :: 1 allowed"],
  [[{ cidr: "::/128" }], [], "0.0.0.0", 1, [], "address 0.0.0.0 1 refused"],
  // mapped and compatible IPv6 are IPv4, both ways
  [
    [{ cidr: "10.0.0.0/8" }],
    [{ cidr: "10.9.0.0/16" }],
    "::10.1.2.3",
    80,
    [],
    "address 10.1.2.3 0 allowed",
  ],
  [
    [{ cidr: "10.0.0.0/8" }],
    [{ cidr: "10.9.0.0/16" }],
    "::ffff:a09:203",
    80,
    [],
    "address 10.9.2.3 0 refused",
  ],
  [[{ cidr: "::ffff:10.0.0.0/8" }], [], "10.0.0.1", 80, [], "address 10.0.0.1 0 allowed"],
  // a rule written as IPv4-compatible IPv6 is the IPv4 range too: the
  // destinations it names are normalised to IPv4 before any rule sees them
  ...[
    ["127.0.0.2", "127.0.0.2 0 refused"],
    ["::127.0.0.2", "127.0.0.2 0 refused"],
    ["::7f00:2", "127.0.0.2 0 refused"],
    ["::ffff:127.0.0.2", "127.0.0.2 0 refused"],
    ["0x7f.2", "127.0.0.2 0 refused"],
    ["127.0.0.3", "127.0.0.3 0 allowed"],
    ["::127.0.0.3", "127.0.0.3 0 allowed"],
  ].flatMap(([h, want]) =>
    ["::127.0.0.2", "::7f00:2/128", "0:0:0:0:0:0:127.0.0.2/128"].map((
      deny,
    ): [AccessRule[], AccessRule[], string, number, string[], string] => [
      [{ cidr: "127.0.0.0/8" }],
      [{ cidr: deny }],
      h!,
      80,
      [],
      `address ${want}`,
    ])
  ),
  [[{ cidr: "::10.0.0.0/104" }], [], "10.1.2.3", 80, [], "address 10.1.2.3 0 allowed"],
  [[{ cidr: "::10.0.0.0/104" }], [], "11.1.2.3", 80, [], "address 11.1.2.3 0 refused"],
  [[{ cidr: "::/0" }], [], "10.1.2.3", 80, [], "address 10.1.2.3 0 refused"],
  [[{ cidr: "::/128" }], [], "::", 1, [], "address :: 1 allowed"],
  // name rules match the canonical name; ports and ranges
  [
    [{ port: 443 }],
    [{ host: "*.internal" }],
    "DB.Internal.",
    443,
    ["192.0.2.1"],
    "name db.internal dotted refused",
  ],
  [
    [{ port: 443 }],
    [{ host: "Blocked.Example." }],
    "blocked.example",
    443,
    ["192.0.2.1"],
    "name blocked.example refused",
  ],
  [
    [{ port: 443 }],
    [{ host: "*.internal" }],
    "WWW.Example.com.",
    443,
    ["192.0.2.1"],
    "name www.example.com dotted allowed 192.0.2.1",
  ],
  [
    [{ port: "8000-8999" }],
    [],
    "a.example",
    8999,
    ["192.0.2.1"],
    "name a.example allowed 192.0.2.1",
  ],
  [[{ port: "8000-8999" }], [], "a.example", 9000, ["192.0.2.1"], "name a.example refused"],
  [
    [{ host: "*.example", port: [443, "80"] }],
    [],
    "x.y.example",
    80,
    ["192.0.2.1"],
    "name x.y.example allowed 192.0.2.1",
  ],
  [[{ host: "*.example" }], [], "example", 80, ["192.0.2.1"], "name example refused"],
  [[{ host: "192.0.2.*" }], [], "192.0.2.5", 80, [], "address 192.0.2.5 0 allowed"],
  // a pattern of digits, dots and stars is an address pattern: it matches
  // the address (a literal, or what a name resolves to), never a name
  // that merely starts with digits
  [
    [{ host: "192.0.2.*" }],
    [],
    "192.0.2.attacker.example",
    80,
    ["10.1.2.3"],
    "name 192.0.2.attacker.example refused",
  ],
  [
    [{ host: "192.0.2.*" }],
    [],
    "db.example",
    80,
    ["192.0.2.9"],
    "name db.example allowed 192.0.2.9",
  ],
  [
    [{ port: 80 }],
    [{ host: "10.*" }],
    "intranet.example",
    80,
    ["10.1.2.3"],
    "name intranet.example refused",
  ],
  [
    [{ port: 80 }],
    [{ host: "10.*" }],
    "10.example",
    80,
    ["192.0.2.1"],
    "name 10.example allowed 192.0.2.1",
  ],
  [[{ host: "*" }], [], "10.example", 80, ["192.0.2.1"], "name 10.example allowed 192.0.2.1"],
  // a name with several addresses: any denied refuses, else the first allowed
  ...[
    [["192.0.2.7", "2001:db8::7"], "allowed 192.0.2.7"],
    [["2001:db8::7", "192.0.2.7"], "allowed 2001:db8::7"],
    [["198.51.100.1", "192.0.2.7"], "allowed 192.0.2.7"],
    [["::ffff:192.0.2.9"], "allowed 192.0.2.9"],
    [["192.0.2.7", "127.0.0.1"], "refused"],
    [["127.0.0.1", "192.0.2.7"], "refused"],
    [["192.0.2.7", "::ffff:127.0.0.1"], "refused"],
    [["192.0.2.7", "0.0.0.0"], "refused"],
    [["198.51.100.1"], "refused"],
    [["not an address"], "refused"],
    [[], "refused"],
  ].map(([list, v]): [AccessRule[], AccessRule[], string, number, string[], string] => [
    [{ cidr: ["192.0.2.0/24", "2001:db8::/32"] }],
    [{ cidr: "127.0.0.0/8" }],
    "multi.example",
    80,
    list as string[],
    `name multi.example ${v}`,
  ]),
];

for (const [impl, check] of POLICIES) {
  describe(`address policy: the shared table (${impl})`, () => {
    test("every spelling normalises to one canonical form, or is refused", {
      timeout: 5000,
    }, async () => {
      for (const [input, want, thisHost = false] of SPELLINGS) {
        const got = await check([{ host: "*" }, { cidr: ["0.0.0.0/8", "::/128"] }], [], input, 1, [
          "192.0.2.1",
        ]);
        const expected = want === "invalid"
          ? "invalid"
          : want.startsWith("name:")
          ? `name ${want.slice(5)}${/\.$/.test(input) ? " dotted" : ""} allowed 192.0.2.1`
          : `address ${want} ${thisHost ? 1 : 0} allowed`;
        assert.equal(
          got,
          impl === "C" && NOT_ASCII.test(input) ? "ts" : expected,
          JSON.stringify(input),
        );
      }
    });

    test("allow and deny rules decide the same cases", { timeout: 5000 }, async () => {
      for (const [allow, deny, host, port, resolved, want] of MATCHES) {
        const got = await check(allow, deny, host, port, resolved);
        assert.equal(got, want, JSON.stringify([allow, deny, host, port, resolved]));
      }
    });
  });
}

describe("address policy: matching", () => {
  const S = 9001;
  const loopbackDenied = new Access([{ port: S }], [{ cidr: ["127.0.0.0/8", "::1/128"] }]);

  test("with loopback denied, no spelling of this host is allowed", { timeout: 5000 }, async () => {
    const spellings = [
      "127.0.0.1",
      "127.9.9.9",
      "0",
      "0.0.0.0",
      "0.1.2.3",
      "::",
      "::1",
      "::ffff:0.0.0.0",
      "::ffff:127.0.0.1",
      "::127.0.0.1",
      "::2",
      "0x7f.1",
      "2130706433",
      "127.1",
      "017700000001",
      "127.0.0.1.",
      "[::]",
      "[::1]",
      "::1%lo",
    ];
    for (const h of spellings) {
      const r = await loopbackDenied.admit(h, S, () => Promise.reject(new Error("no lookup")));
      assert.ok("refused" in r && r.code === "RK_EDENIED", `${h}: ${JSON.stringify(r)}`);
      assert.equal(loopbackDenied.allows(undefined, h, S), false, h);
    }
    assert.equal(loopbackDenied.allows(undefined, "10.1.2.3", S), true);
  });

  test("a deny of either loopback covers the unspecified addresses", { timeout: 5000 }, () => {
    for (const cidr of ["127.0.0.1/32", "::1/128"]) {
      const a = new Access([{ port: S }], [{ cidr }]);
      for (const h of ["0.0.0.0", "::", "0.0.0.7", "::ffff:0.0.0.0"]) {
        assert.equal(a.allows(undefined, h, S), false, `${cidr} ${h}`);
      }
    }
  });

  test("only a rule naming them reaches the unspecified addresses", { timeout: 5000 }, () => {
    // [allow rules, address, allowed?]
    const table: [AccessRule[], string, boolean][] = [
      [[{ port: S }], "0.0.0.0", false],
      [[{ host: "*" }], "0.0.0.0", false],
      [[{ cidr: "0.0.0.0/0" }], "0.0.0.0", false],
      [[{ cidr: "0.0.0.0/0" }], "10.0.0.1", true],
      [[{ cidr: "::/0" }], "::", false],
      [[{ cidr: "0.0.0.0/8" }], "0.0.0.0", true],
      [[{ cidr: "0.0.0.0/8" }], "0.9.9.9", true],
      [[{ cidr: "0.0.0.0/32" }], "0.0.0.0", true],
      [[{ cidr: "0.0.0.0/32" }], "::ffff:0.0.0.0", true],
      [[{ cidr: "0.0.0.0/32" }], "::", false],
      [[{ cidr: "::/128" }], "::", true],
      [[{ cidr: "::/128" }], "0.0.0.0", false],
      [[{ cidr: "127.0.0.0/8" }], "0.0.0.0", false],
    ];
    for (const [allow, h, want] of table) {
      assert.equal(
        new Access(allow).allows(undefined, h, S),
        want,
        `${JSON.stringify(allow)} ${h}`,
      );
    }
  });

  test("mapped and compatible IPv6 match IPv4 rules, both ways", { timeout: 5000 }, () => {
    const a = new Access([{ cidr: "10.0.0.0/8" }], [{ cidr: "10.9.0.0/16" }]);
    assert.equal(a.allows(undefined, "::ffff:10.1.2.3", 80), true);
    assert.equal(a.allows(undefined, "::10.1.2.3", 80), true);
    assert.equal(a.allows(undefined, "::ffff:10.9.2.3", 80), false);
    assert.equal(a.allows(undefined, "::ffff:a09:203", 80), false);
    assert.equal(a.allows(undefined, "::a09:203", 80), false);
    // a mapped range is an IPv4 range: /104 is out of range for it
    assert.throws(() => new Access([{ cidr: "::ffff:10.0.0.0/104" }]), RangeError);
    assert.equal(
      new Access([{ cidr: "::ffff:10.0.0.0/8" }]).allows(undefined, "10.0.0.1", 80),
      true,
    );
  });

  test("name rules match the canonical name", { timeout: 5000 }, async () => {
    const a = new Access([{ port: 443 }], [{ host: "*.internal" }, { host: "Blocked.Example." }]);
    const resolve = () => Promise.resolve(["192.0.2.1"]);
    for (
      const h of [
        "db.internal",
        "DB.INTERNAL",
        "db.internal.",
        "blocked.example",
        "BLOCKED.example.",
      ]
    ) {
      const r = await a.admit(h, 443, resolve);
      assert.ok("refused" in r && r.code === "RK_EDENIED", h);
    }
    const ok = await a.admit("WWW.Example.com.", 443, resolve);
    assert.ok("address" in ok && ok.address.text === "192.0.2.1" && ok.name === "www.example.com");
  });

  test("a name with several addresses: any denied refuses, else the first allowed", {
    timeout: 5000,
  }, async () => {
    const a = new Access([{ cidr: ["192.0.2.0/24", "2001:db8::/32"] }], [{ cidr: "127.0.0.0/8" }]);
    const with_ = (list: string[]) => () => Promise.resolve(list);
    const pick = async (list: string[]) => {
      const r = await a.admit("multi.example", 80, with_(list));
      return "address" in r ? r.address.text : r.code;
    };
    assert.equal(await pick(["192.0.2.7", "2001:db8::7"]), "192.0.2.7");
    assert.equal(await pick(["2001:db8::7", "192.0.2.7"]), "2001:db8::7");
    assert.equal(await pick(["198.51.100.1", "192.0.2.7"]), "192.0.2.7"); // not allowed: skipped
    assert.equal(await pick(["::ffff:192.0.2.9"]), "192.0.2.9"); // connect to the IPv4 checked
    assert.equal(await pick(["192.0.2.7", "127.0.0.1"]), "RK_EDENIED");
    assert.equal(await pick(["127.0.0.1", "192.0.2.7"]), "RK_EDENIED");
    assert.equal(await pick(["192.0.2.7", "::ffff:127.0.0.1"]), "RK_EDENIED");
    assert.equal(await pick(["192.0.2.7", "0.0.0.0"]), "RK_EDENIED"); // this host, loopback denied
    assert.equal(await pick(["198.51.100.1"]), "RK_EDENIED");
    assert.equal(await pick(["not an address"]), "RK_EDENIED");
    assert.equal(await pick([]), "RK_ERESOLVE");
    const failing = await a.admit("x.example", 80, () => Promise.reject(new Error("NXDOMAIN")));
    assert.ok("refused" in failing && failing.code === "RK_ERESOLVE");
  });

  test("numeric names and literals are never sent to the resolver", { timeout: 5000 }, async () => {
    const a = new Access([{ port: 80 }]);
    const asked: string[] = [];
    const resolve = (n: string) => {
      asked.push(n);
      return Promise.resolve(["192.0.2.1"]);
    };
    for (
      const h of ["0x7f.1", "2130706433", "127.1", "::ffff:127.0.0.1", "10.0.0.1", "08.1", "::1%lo"]
    ) {
      await a.admit(h, 80, resolve);
    }
    assert.deepEqual(asked, []);
    await a.admit("Example.COM.", 80, resolve);
    assert.deepEqual(asked, ["example.com."]);
  });
});

// ---------------------------------------------------------------------------
// end to end

/** A TCP service listening on 127.0.0.1:port and [::1]:port, counting connections. */
async function localService(): Promise<{ port: number; count(): number; close(): Promise<void> }> {
  let n = 0;
  const servers: net.Server[] = [];
  const sockets = new Set<net.Socket>();
  const onConn = (s: net.Socket) => {
    n++;
    sockets.add(s);
    s.on("error", () => {});
    s.on("close", () => sockets.delete(s));
    s.end("local service\n");
  };
  const listen = (host: string, port: number) =>
    new Promise<net.Server>((resolve, reject) => {
      const srv = net.createServer(onConn);
      srv.once("error", reject);
      srv.listen({ host, port }, () => resolve(srv));
    });
  for (let attempt = 0;; attempt++) {
    const v4 = await listen("127.0.0.1", 0);
    const port = (v4.address() as net.AddressInfo).port;
    try {
      servers.push(v4, await listen("::1", port));
      break;
    } catch (err) {
      v4.close();
      if (attempt === 10) throw err;
    }
  }
  return {
    port: (servers[0]!.address() as net.AddressInfo).port,
    count: () => n,
    close: () => {
      for (const s of sockets) s.destroy();
      return Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r())))).then(
        () => {},
      );
    },
  };
}

/**
 * Connect to `host`:`port`, send `bytes`, collect what comes back until the
 * connection closes or `want` bytes came (at most 5 s).
 */
async function exchange(
  port: number,
  bytes: Uint8Array | string,
  host = "127.0.0.1",
  want = Infinity,
): Promise<Uint8Array> {
  const s = await new Promise<net.Socket>((resolve, reject) => {
    const c = net.connect({ host, port });
    c.once("connect", () => resolve(c));
    c.once("error", reject);
  });
  const parts: Uint8Array[] = [];
  let n = 0;
  s.on("data", (d: Uint8Array) => {
    parts.push(d);
    n += d.length;
    if (n >= want) s.destroy();
  });
  s.on("error", () => {});
  const done = new Promise<void>((r) => s.once("close", () => r()));
  s.write(bytes);
  const timer = setTimeout(() => s.destroy(), 5000);
  await done;
  clearTimeout(timer);
  return concat(parts);
}

const enc = new TextEncoder();
const u16 = (n: number) => [n >> 8, n & 0xff];

/** SOCKS5 greeting (no auth) and CONNECT request, one write. */
function socks5(atyp: 1 | 3 | 4, addr: Uint8Array, port: number): Uint8Array {
  const a = atyp === 3 ? [addr.length, ...addr] : [...addr];
  return new Uint8Array([5, 1, 0, 5, 1, 0, atyp, ...a, ...u16(port)]);
}
const SOCKS5_DENIED = [5, 0, 5, 2, 0, 1, 0, 0, 0, 0, 0, 0];
const SOCKS5_OK = [5, 0, 5, 0, 0, 1, 0, 0, 0, 0, 0, 0];

function socks4(ip: number[], port: number, name?: string): Uint8Array {
  const tail = name === undefined ? [] : [...enc.encode(name), 0];
  return new Uint8Array([4, 1, ...u16(port), ...ip, ...enc.encode("u"), 0, ...tail]);
}
const SOCKS4_DENIED = [0, 91, 0, 0, 0, 0, 0, 0];

const v6 = ipv6Bytes;

/** Names (text spellings) of this host that a client can send. */
const NAMES = [
  "0",
  "0.0.0.0",
  "00",
  "0x0",
  "::",
  "::0",
  "::ffff:0.0.0.0",
  "::ffff:127.0.0.1",
  "::127.0.0.1",
  "[::]",
  "[::1]",
  "::1",
  "::1%lo",
  "::1%1",
  "127.0.0.1",
  "127.0.0.1.",
  "0x7f.1",
  "0x7f000001",
  "2130706433",
  "127.1",
  "017700000001",
  "0177.0.0.1",
  "１２７.０.０.１",
  "localhost",
  "LOCALHOST",
  "localhost.",
  "LocalHost",
  "127.0.0.1\0.example.com",
  "127.0.0.1 ",
  "08.0.0.1",
];

/** Text IPv6 spellings: HTTP CONNECT brackets them. */
const bracket = (h: string) => (h.includes(":") && !h.startsWith("[") ? `[${h}]` : h);

const HTTP_403 = /^HTTP\/1\.1 403 Forbidden\r\n/;

for (const engine of ENGINES) {
  describe(`address policy end to end (${engine} engine)`, () => {
    let svc: Awaited<ReturnType<typeof localService>>;
    let allowed: Awaited<ReturnType<typeof localService>>;
    let socksProxy: TcpProxy;
    let httpProxy: TcpProxy;
    const denied: string[] = [];
    before(async () => {
      if (engine === "native") nativeEngine();
      svc = await localService();
      allowed = await localService();
      // as `--allow '*:S,*:A' --deny '127.0.0.0/8:S,[::1]/128:S'`: the loopback
      // service on S is denied, the one on A stays reachable
      const opts = {
        allow: [{ port: svc.port }, { port: allowed.port }],
        deny: [{ cidr: "127.0.0.0/8", port: svc.port }, { cidr: "::1/128", port: svc.port }],
        onDenied: (what: string) => void denied.push(what),
      };
      socksProxy = await TcpProxy.listen({
        listen: { host: "127.0.0.1", port: 0 },
        engine,
        route: socksRouter(opts),
      });
      httpProxy = await TcpProxy.listen({
        listen: { host: "127.0.0.1", port: 0 },
        engine,
        route: httpConnectRouter(opts),
      });
    });
    after(async () => {
      await socksProxy.close();
      await httpProxy.close();
      await svc.close();
      await allowed.close();
    });

    test("the unspecified addresses reach the local service when nothing stops them", {
      timeout: 10_000,
    }, async () => {
      // the premise of the tests below: without the policy these would land
      const before = svc.count();
      for (const host of ["0.0.0.0", "::"]) {
        const got = await exchange(svc.port, "", host);
        assert.equal(new TextDecoder().decode(got), "local service\n", host);
      }
      assert.equal(svc.count(), before + 2);
    });

    test("SOCKS5: every spelling of this host is refused with reply 2", {
      timeout: 30_000,
    }, async () => {
      const before = svc.count();
      const requests: [string, Uint8Array][] = [
        ["atyp 1 127.0.0.1", socks5(1, new Uint8Array([127, 0, 0, 1]), svc.port)],
        ["atyp 1 127.1.2.3", socks5(1, new Uint8Array([127, 1, 2, 3]), svc.port)],
        ["atyp 1 0.0.0.0", socks5(1, new Uint8Array([0, 0, 0, 0]), svc.port)],
        ["atyp 1 0.0.0.1", socks5(1, new Uint8Array([0, 0, 0, 1]), svc.port)],
        ...["::", "::1", "::ffff:0.0.0.0", "::ffff:127.0.0.1", "::127.0.0.1", "::2"].map((
          h,
        ): [string, Uint8Array] => [`atyp 4 ${h}`, socks5(4, v6(h), svc.port)]),
        ...NAMES.map((h): [string, Uint8Array] => [
          `atyp 3 ${JSON.stringify(h)}`,
          socks5(3, enc.encode(h), svc.port),
        ]),
      ];
      for (const [what, bytes] of requests) {
        assert.deepEqual([...await exchange(socksProxy.port, bytes)], SOCKS5_DENIED, what);
      }
      assert.equal(svc.count(), before, "the local service saw a connection");
    });

    test("SOCKS4 and SOCKS4a: every spelling of this host is refused with 91", {
      timeout: 30_000,
    }, async () => {
      const before = svc.count();
      const requests: [string, Uint8Array][] = [
        ["SOCKS4 127.0.0.1", socks4([127, 0, 0, 1], svc.port)],
        ["SOCKS4 0.0.0.0", socks4([0, 0, 0, 0], svc.port)],
        ["SOCKS4 127.255.0.1", socks4([127, 255, 0, 1], svc.port)],
        ...NAMES.filter((h) => !h.includes("\0")).map((h): [string, Uint8Array] => [
          `SOCKS4a ${JSON.stringify(h)}`,
          socks4([0, 0, 0, 1], svc.port, h),
        ]),
      ];
      for (const [what, bytes] of requests) {
        assert.deepEqual([...await exchange(socksProxy.port, bytes)], SOCKS4_DENIED, what);
      }
      assert.equal(svc.count(), before, "the local service saw a connection");
    });

    test("HTTP CONNECT: every spelling of this host is refused with 403", {
      timeout: 30_000,
    }, async () => {
      const before = svc.count();
      for (const h of NAMES.filter((h) => !/[\s\0]/.test(h))) {
        const head = `CONNECT ${bracket(h)}:${svc.port} HTTP/1.1\r\nHost: x\r\n\r\n`;
        const got = new TextDecoder().decode(await exchange(httpProxy.port, head));
        assert.match(got, HTTP_403, h);
      }
      assert.equal(svc.count(), before, "the local service saw a connection");
    });

    test("allowed destinations still work, connected by their checked address", {
      timeout: 30_000,
    }, async () => {
      const before = allowed.count();
      const p = allowed.port;
      const hello = [...enc.encode("local service\n")];
      // the service ends at once; read the bytes wanted rather than wait for that end
      const ask = async (
        bytes: Uint8Array | string,
        reply: number[],
      ) => [...await exchange(socksProxy.port, bytes, "127.0.0.1", reply.length + hello.length)];
      for (const h of ["127.0.0.1", "0x7f.1", "2130706433", "::ffff:127.0.0.1", "::1"]) {
        const want = [...SOCKS5_OK, ...hello];
        assert.deepEqual(await ask(socks5(3, enc.encode(h), p), SOCKS5_OK), want, `SOCKS5 ${h}`);
      }
      assert.deepEqual(await ask(socks5(4, v6("::1"), p), SOCKS5_OK), [...SOCKS5_OK, ...hello]);
      const granted = [0, 90, 0, 0, 0, 0, 0, 0];
      assert.deepEqual(await ask(socks4([127, 0, 0, 1], p), granted), [...granted, ...hello]);
      const established = "HTTP/1.1 200 Connection established\r\n\r\n";
      for (const h of ["127.0.0.1", "127.1", "[::1]", "[::ffff:127.0.0.1]"]) {
        const head = `CONNECT ${h}:${p} HTTP/1.1\r\n\r\n`;
        const want = established.length + hello.length;
        const got = new TextDecoder().decode(
          await exchange(httpProxy.port, head, "127.0.0.1", want),
        );
        assert.equal(got, `${established}local service\n`, h);
      }
      assert.equal(allowed.count(), before + 11);
    });

    test("a rule naming 0.0.0.0 is what lets a client reach it", { timeout: 10_000 }, async () => {
      const proxy = await TcpProxy.listen({
        listen: { host: "127.0.0.1", port: 0 },
        engine,
        route: socksRouter({ allow: [{ cidr: "0.0.0.0/32", port: allowed.port }] }),
      });
      try {
        const before = allowed.count();
        const got = await exchange(
          proxy.port,
          socks5(1, new Uint8Array(4), allowed.port),
          "127.0.0.1",
          SOCKS5_OK.length,
        );
        assert.deepEqual([...got.subarray(0, SOCKS5_OK.length)], SOCKS5_OK);
        assert.equal(allowed.count(), before + 1);
      } finally {
        await proxy.close();
      }
    });
  });
}

describe("address policy: the routers connect to the checked literal", () => {
  test("a name becomes an address literal in the route result", { timeout: 10_000 }, async () => {
    const route = socksRouter({ allow: [{ port: 80 }] });
    const http = httpConnectRouter({ allow: [{ port: 80 }] });
    const conn = { id: 1 } as unknown as RouteConnection;
    for (const h of ["localhost", "LOCALHOST", "0x7f.1", "::ffff:7f00:1"]) {
      const r = await route(socks5(3, enc.encode(h), 80), conn);
      assert.ok(typeof r === "object" && r !== null && "remote" in r, h);
      assert.match(String(r.remote), /^(127\.0\.0\.1|\[::1\]):80$/, h);
      const t = await http(enc.encode(`CONNECT ${bracket(h)}:80 HTTP/1.1\r\n\r\n`), conn);
      assert.ok(typeof t === "object" && t !== null && "remote" in t, h);
      assert.match(String(t.remote), /^(127\.0\.0\.1|\[::1\]):80$/, h);
    }
  });
});

describe("address policy: tunnel OPEN", () => {
  test("every spelling of this host is refused; an allowed one still works", {
    timeout: 30_000,
  }, async () => {
    const svc = await localService();
    const ok = await localService();
    const srv = await TunnelServer.listen({
      listen: { host: "127.0.0.1", port: 0 },
      allow: [{ port: svc.port }, { port: ok.port }],
      deny: [{ cidr: "127.0.0.0/8", port: svc.port }, { cidr: "::1/128", port: svc.port }],
    });
    const hosts = NAMES.filter((h) => !h.includes("\0"));
    const client = await TunnelClient.start({
      link: srv.address,
      listeners: [
        ...hosts.map((host) => ({
          listen: { host: "127.0.0.1", port: 0 },
          to: { host, port: svc.port },
        })),
        ...["0x7f.1", "::ffff:127.0.0.1", "::1"].map((host) => ({
          listen: { host: "127.0.0.1", port: 0 },
          to: { host, port: ok.port },
        })),
      ],
    });
    try {
      const ends: TunnelClientEvents["stream-end"][] = [];
      client.on("stream-end", (e) => ends.push(e));
      await client.waitUp(5000);
      for (const [i, h] of hosts.entries()) {
        const got = await exchange(client.addresses[i]!.port, "x");
        assert.equal(got.length, 0, h);
      }
      await waitFor(() => ends.length === hosts.length, 5000, "the stream ends");
      for (const [i, e] of ends.entries()) {
        // "localhost." does not resolve on every machine: a resolve failure is a refusal too
        assert.ok(
          (e.reason === "refused" && e.error?.code === "RK_EDENIED") ||
            (e.reason === "connect-failed" && e.error?.code === "RK_ERESOLVE"),
          `${hosts[i]}: ${e.reason} ${e.error?.code}`,
        );
      }
      assert.equal(svc.count(), 0, "the local service saw a connection");
      for (const a of client.addresses.slice(hosts.length)) {
        const got = await exchange(a.port, "x", "127.0.0.1", "local service\n".length);
        assert.equal(new TextDecoder().decode(got), "local service\n");
      }
      assert.equal(ok.count(), 3);
    } finally {
      await client.close();
      await srv.close();
      await svc.close();
      await ok.close();
    }
  });
});

describe("address policy: the command and the config file", () => {
  test("`--allow '*:S' --deny '127.0.0.0/8,[::1]/128'` refuses every spelling of this host", {
    timeout: 60_000,
  }, async () => {
    const svc = await localService();
    const S = svc.port;
    const rules = ["--allow", `*:${S}`, "--deny", "127.0.0.0/8,[::1]/128"];
    const dir = mkdtempSync(join(tmpdir(), "relaykit-policy-"));
    const cfgPort = await freePort();
    const cfgTunnelPort = await freePort();
    writeFileSync(
      join(dir, "socks.yaml"),
      `listeners:\n  - name: s\n    address: 127.0.0.1\n    port: ${cfgPort}\n    socks:\n` +
        `      allow: [{ port: ${S} }]\n` +
        `      deny: [{ cidr: 127.0.0.0/8 }, { cidr: "::1/128" }]\n` +
        `tunnel_servers:\n  - name: t\n    address: 127.0.0.1\n    port: ${cfgTunnelPort}\n` +
        `    allow: [{ port: ${S} }]\n    deny: [{ cidr: 127.0.0.0/8 }, { cidr: "::1/128" }]\n`,
    );
    const children = [
      ...ENGINES.flatMap((engine) => [
        startCli(["socks", "--listen", "127.0.0.1:0", "--engine", engine, ...rules]),
        startCli(["http-connect", "--listen", "127.0.0.1:0", "--engine", engine, ...rules]),
      ]),
      startCli(["tunnel", "server", "--listen", "127.0.0.1:0", ...rules]),
    ];
    const run = startCli(["run", join(dir, "socks.yaml")]);
    const clients: TunnelClient[] = [];
    try {
      const ports = await Promise.all(
        children.map(async (c) => Number((await c.line).match(/on 127\.0\.0\.1:(\d+)/)?.[1])),
      );
      await run.line;
      const hosts = ["0.0.0.0", "::", "::ffff:0.0.0.0", "0", "127.1", "0x7f.1", "::ffff:127.0.0.1"];
      for (const [i, port] of ports.slice(0, -1).entries()) {
        for (const h of hosts) {
          if (i % 2 === 0) {
            const got = [...await exchange(port, socks5(3, enc.encode(h), S))];
            assert.deepEqual(got, SOCKS5_DENIED, `socks ${h}`);
          } else {
            const head = `CONNECT ${bracket(h)}:${S} HTTP/1.1\r\n\r\n`;
            assert.match(new TextDecoder().decode(await exchange(port, head)), HTTP_403, h);
          }
        }
        const v4 = socks5(1, new Uint8Array(4), S);
        if (i % 2 === 0) assert.deepEqual([...await exchange(port, v4)], SOCKS5_DENIED);
      }
      for (const h of hosts) {
        const got = [...await exchange(cfgPort, socks5(3, enc.encode(h), S))];
        assert.deepEqual(got, SOCKS5_DENIED, `run socks ${h}`);
      }
      // the command's tunnel server, then the config file's
      for (const link of [ports.at(-1)!, cfgTunnelPort]) {
        const client = await TunnelClient.start({
          link: { host: "127.0.0.1", port: link },
          listeners: hosts.map((host) => ({
            listen: { host: "127.0.0.1", port: 0 },
            to: { host, port: S },
          })),
        });
        clients.push(client);
        const ends: TunnelClientEvents["stream-end"][] = [];
        client.on("stream-end", (e) => ends.push(e));
        await client.waitUp(10_000);
        for (const a of client.addresses) assert.equal((await exchange(a.port, "x")).length, 0);
        await waitFor(() => ends.length === hosts.length, 5000, "the stream ends");
        assert.deepEqual(ends.map((e) => e.error?.code), hosts.map(() => "RK_EDENIED"));
      }
      assert.equal(svc.count(), 0, "the local service saw a connection");
    } finally {
      for (const c of clients) await c.close();
      for (const c of [...children, run]) c.child.kill("SIGKILL");
      await svc.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
