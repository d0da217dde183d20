// The relaykit stats page: polls /api/v1/stats and one page of
// /api/v1/connections every second; actions are POSTs with the token.
// Every value is put in the page as text, never as markup.
/* global uPlot */
"use strict";

const PAGE = 50;
const HISTORY = 600; // points kept for the charts (ten minutes)
const $ = (id) => document.getElementById(id);
let token = sessionStorage.getItem("relaykit-token") ?? "";
let offset = 0;
let totalConns = 0;
let last; // the previous sample, for rates
const series = [[], [], [], []]; // time, bytes in/s, bytes out/s, conn/s
let charts;

function headers() {
  return token === "" ? {} : { Authorization: `Bearer ${token}` };
}

function banner(text) {
  const b = $("banner");
  b.textContent = text;
  b.className = text === "" ? "" : "show";
}

async function api(path, method = "GET") {
  const r = await fetch(`api/v1/${path}`, { method, headers: headers(), cache: "no-store" });
  const body = await r.json().catch(() => ({}));
  if (r.status === 401) throw new Error(`refused (401): ${body.error ?? "a token is needed"}`);
  if (!r.ok) throw new Error(body.error ?? `HTTP ${r.status}`);
  return body;
}

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i === 0 ? n : n.toFixed(1)} ${units[i]}`;
}

function age(ms) {
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${s % 60}s`;
  return `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60)}m`;
}

function cell(tr, value, cls) {
  const td = document.createElement("td");
  td.textContent = String(value);
  if (cls !== undefined) td.className = cls;
  tr.appendChild(td);
  return td;
}

function button(td, label, title, action) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = label;
  b.title = title;
  b.dataset.action = label;
  b.addEventListener("click", async () => {
    try {
      const r = await action();
      banner(r.message ?? "");
      await refresh();
    } catch (err) {
      banner(`${label}: ${err.message}`);
    }
  });
  td.appendChild(b);
}

function errorsText(errors) {
  const parts = Object.entries(errors).map(([k, v]) => `${k}:${v}`);
  return parts.length === 0 ? "" : parts.join(" ");
}

function renderListeners(listeners) {
  const body = $("listeners").tBodies[0];
  body.replaceChildren();
  const select = $("conn-listener");
  const chosen = select.value;
  select.replaceChildren(new Option("all", ""));
  for (const l of listeners) {
    const tr = document.createElement("tr");
    tr.dataset.listener = l.name;
    cell(tr, l.name, "name");
    cell(tr, l.address, "text");
    cell(tr, l.engine, "text");
    cell(tr, l.state, `state ${l.state}`);
    cell(tr, l.current, "cur");
    cell(tr, l.peak);
    cell(tr, l.limit === 0 ? "-" : l.limit);
    cell(tr, l.opened, "total");
    cell(tr, l.rate.conn_per_s);
    cell(tr, bytes(l.bytes_in), "bytes-in");
    cell(tr, bytes(l.bytes_out));
    cell(tr, bytes(l.rate.bytes_in_per_s));
    cell(tr, bytes(l.rate.bytes_out_per_s));
    cell(tr, errorsText({ ...l.errors }), "text");
    const td = cell(tr, "", "text");
    const path = `listeners/${encodeURIComponent(l.name)}`;
    if (l.state === "enabled") {
      button(td, "disable", "stop accepting", () => api(`${path}/disable`, "POST"));
    } else {
      button(td, "enable", "accept again", () => api(`${path}/enable`, "POST"));
    }
    body.appendChild(tr);
    select.appendChild(new Option(l.name, l.name, false, l.name === chosen));
  }
}

function renderBackends(backends) {
  const box = $("backends");
  box.replaceChildren();
  const cols = [
    "server",
    "address",
    "state",
    "health",
    "weight",
    "cur",
    "total",
    "conn fail",
    "bytes in",
    "bytes out",
    "since",
    "",
  ];
  for (const b of backends) {
    const table = document.createElement("table");
    table.dataset.backend = b.name;
    const head = table.createTHead();
    const g = head.insertRow();
    const th = document.createElement("th");
    th.colSpan = cols.length;
    th.className = "group";
    th.textContent = `${b.name} (${b.balance}) - ${b.current} open, ${b.total} in all`;
    g.appendChild(th);
    const hr = head.insertRow();
    for (const c of cols) {
      const h = document.createElement("th");
      h.textContent = c;
      hr.appendChild(h);
    }
    const body = table.createTBody();
    for (const s of b.servers) {
      const tr = body.insertRow();
      tr.className = s.state;
      tr.dataset.server = `${b.name}/${s.name}`;
      cell(tr, s.name, "name");
      cell(tr, s.address, "text");
      cell(tr, s.state, `state ${s.state}`);
      cell(
        tr,
        s.health === null ? "-" : s.health.ok ? "ok" : `fail: ${s.health.reason ?? ""}`,
        "text",
      );
      cell(tr, s.weight, "weight");
      cell(tr, s.current, "cur");
      cell(tr, s.total, "total");
      cell(tr, s.connect_failures);
      cell(tr, bytes(s.bytes_in));
      cell(tr, bytes(s.bytes_out));
      cell(tr, age(Date.now() - Date.parse(s.changed_at)));
      const td = cell(tr, "", "text");
      const path = `servers/${encodeURIComponent(b.name)}/${encodeURIComponent(s.name)}/state`;
      for (const state of ["drain", "maint", "ready"]) {
        button(td, state, `set ${state}`, () => api(`${path}?state=${state}`, "POST"));
      }
      button(td, "weight", "set its weight (0-256)", () => {
        const w = prompt(`weight of ${b.name}/${s.name} (0-256)`, String(s.weight));
        if (w === null || w.trim() === "") return Promise.resolve({});
        const base = `servers/${encodeURIComponent(b.name)}/${encodeURIComponent(s.name)}`;
        return api(`${base}/weight?weight=${encodeURIComponent(w.trim())}`, "POST");
      });
    }
    box.appendChild(table);
  }
}

function renderConnections(page) {
  totalConns = page.total;
  $("conn-count").textContent = `(${page.total} open)`;
  $("conn-range").textContent = page.total === 0
    ? "none"
    : `${page.offset + 1}-${page.offset + page.connections.length} of ${page.total}`;
  const body = $("connections").tBodies[0];
  body.replaceChildren();
  for (const c of page.connections) {
    const tr = document.createElement("tr");
    tr.dataset.id = String(c.id);
    cell(tr, c.id);
    cell(tr, c.worker ?? "-");
    cell(tr, c.listener, "text");
    cell(tr, c.client ?? "-", "text");
    cell(tr, c.original_client ?? "-", "text");
    cell(tr, c.server ?? "-", "text");
    cell(tr, age(c.age_ms));
    cell(tr, bytes(c.bytes_in));
    cell(tr, bytes(c.bytes_out));
    cell(tr, c.state, "text");
    cell(tr, c.engine, "text");
    const td = cell(tr, "", "text");
    const w = c.worker === undefined ? "" : `?worker=${c.worker}`;
    button(
      td,
      "close",
      "close this connection",
      () => api(`connections/${c.id}/close${w}`, "POST"),
    );
    body.appendChild(tr);
  }
}

function renderMeta(p) {
  const meta = $("meta");
  meta.replaceChildren();
  const items = [
    `v${p.version}`,
    `${p.runtime} ${p.runtime_version}`,
    `${p.engine} engine`,
    `${p.workers} worker${p.workers === 1 ? "" : "s"}`,
    `up ${age(p.uptime_s * 1000)}`,
    `${p.fds} fds`,
    `RSS ${bytes(p.rss_bytes)}`,
  ];
  for (const t of items) {
    const s = document.createElement("span");
    s.textContent = t;
    meta.appendChild(s);
  }
}

function makeCharts() {
  const width = Math.min(560, Math.max(300, (globalThis.innerWidth - 80) / 2));
  const opts = (title, labels, fmt) => ({
    title,
    width,
    height: 180,
    series: [
      {},
      ...labels.map((label, i) => ({
        label,
        stroke: ["#1565c0", "#ef6c00"][i],
        width: 1.5,
        value: (_u, v) => v === null ? "-" : fmt(v),
      })),
    ],
    axes: [
      {
        values: (_u, vals) => vals.map((t) => new Date(t * 1000).toTimeString().slice(0, 8)),
        space: 70,
        incrs: [1, 2, 5, 10, 15, 30, 60, 120, 300, 600], // whole seconds
      },
      { values: (_u, vals) => vals.map(fmt), size: 80 },
    ],
  });
  return {
    bytes: new uPlot(
      opts("throughput", ["in/s", "out/s"], bytes),
      [series[0], series[1], series[2]],
      $("chart-bytes"),
    ),
    conns: new uPlot(
      opts("new connections", ["conn/s"], (v) => v.toFixed(1)),
      [series[0], series[3]],
      $("chart-conns"),
    ),
  };
}

function sample(listeners) {
  const now = Date.now() / 1000;
  const sum = (k) => listeners.reduce((n, l) => n + l[k], 0);
  const cur = { t: now, in: sum("bytes_in"), out: sum("bytes_out"), opened: sum("opened") };
  if (last !== undefined && cur.t > last.t) {
    const dt = cur.t - last.t;
    series[0].push(now);
    series[1].push(Math.max(0, (cur.in - last.in) / dt));
    series[2].push(Math.max(0, (cur.out - last.out) / dt));
    series[3].push(Math.max(0, (cur.opened - last.opened) / dt));
    for (const s of series) if (s.length > HISTORY) s.shift();
    charts ??= makeCharts();
    charts.bytes.setData([series[0], series[1], series[2]]);
    charts.conns.setData([series[0], series[3]]);
  }
  last = cur;
}

let busy = false;
async function refresh() {
  if (busy) return;
  busy = true;
  try {
    const q = new URLSearchParams({ offset: String(offset), limit: String(PAGE) });
    if ($("conn-listener").value !== "") q.set("listener", $("conn-listener").value);
    if ($("conn-client").value !== "") q.set("client", $("conn-client").value);
    const [stats, conns] = await Promise.all([api("stats"), api(`connections?${q}`)]);
    renderMeta(stats.process);
    renderListeners(stats.listeners);
    renderBackends(stats.backends);
    renderConnections(conns);
    sample(stats.listeners);
    if ($("banner").textContent.startsWith("refused")) banner("");
    document.body.dataset.updated = stats.time;
  } catch (err) {
    banner(err.message);
  } finally {
    busy = false;
  }
}

$("token").value = token;
$("auth").addEventListener("submit", (e) => {
  e.preventDefault();
  token = $("token").value.trim();
  sessionStorage.setItem("relaykit-token", token);
  banner("");
  void refresh();
});
$("conn-prev").addEventListener("click", () => {
  offset = Math.max(0, offset - PAGE);
  void refresh();
});
$("conn-next").addEventListener("click", () => {
  if (offset + PAGE < totalConns) offset += PAGE;
  void refresh();
});
$("conn-listener").addEventListener("change", () => {
  offset = 0;
  void refresh();
});
$("conn-client").addEventListener("change", () => {
  offset = 0;
  void refresh();
});
void refresh();
// a hidden tab asks nothing (the proxy then does no work for the page)
setInterval(() => {
  if (!document.hidden) void refresh();
}, 1000);
