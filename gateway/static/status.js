// The status page: polls /api/status and renders it.  Every server string goes through
// textContent (never innerHTML): a point name or an error message can never become markup.
"use strict";

const REFRESH_MS = 2000;
const $ = (id) => document.getElementById(id);
let timer = null;
let devicesKnown = "";

function cell(text, cls) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "" : String(text);
  if (cls) td.className = cls;
  return td;
}

function described(td, text) {  // a description (any language) as the cell's tooltip
  if (text) td.title = text;
  return td;
}

function age(s) {
  if (s === null || s === undefined) return "–";
  if (s < 60) return s.toFixed(1) + " s";
  if (s < 3600) return (s / 60).toFixed(1) + " min";
  if (s < 86400) return (s / 3600).toFixed(1) + " h";
  return (s / 86400).toFixed(1) + " d";
}

function bytes(n) {
  if (n < 1024) return n + " B";
  if (n < 1 << 20) return (n / 1024).toFixed(1) + " KiB";
  if (n < 1 << 30) return (n / (1 << 20)).toFixed(1) + " MiB";
  return (n / (1 << 30)).toFixed(2) + " GiB";
}

function value(v) {
  if (v === null || v === undefined) return "";
  if (typeof v === "number" && !Number.isInteger(v)) return String(Number(v.toPrecision(7)));
  return String(v);
}

function fill(dl, pairs) {
  const items = [];
  for (const [k, v] of pairs) {
    const dt = document.createElement("dt");
    dt.textContent = k;
    const dd = document.createElement("dd");
    dd.textContent = v === null || v === undefined ? "–" : String(v);
    items.push(dt, dd);
  }
  dl.replaceChildren(...items);
}

function renderDevices(devices) {
  const rows = devices.map((d) => {
    const tr = document.createElement("tr");
    tr.className = "device state-" + d.state;
    tr.dataset.device = d.name;
    tr.dataset.state = d.state;
    tr.append(
      cell(d.state, "state"), cell(d.name), described(cell(d.display_name), d.description), cell(d.type),
      cell(age(d.last_data_age_s), "age"), cell(d.last_error, "error"), cell(age(d.last_error_age_s), "age"),
      cell(d.bad_points + " / " + d.points, "num"), cell(d.polls, "num"), cell(d.deadline_misses, "num"),
    );
    return tr;
  });
  $("devices").tBodies[0].replaceChildren(...rows);
  const names = devices.map((d) => d.name).join("\n");
  if (names !== devicesKnown) {  // keep the selection while the list is the same
    devicesKnown = names;
    const sel = $("device-filter");
    const chosen = sel.value;
    const opts = [sel.options[0]];
    for (const d of devices) {
      const o = document.createElement("option");
      o.value = d.name;
      o.textContent = d.display_name ? d.name + " " + d.display_name : d.name;
      opts.push(o);
    }
    sel.replaceChildren(...opts);
    sel.value = chosen;
  }
}

function renderPoints(s) {
  const rows = s.points.map((p) => {
    const tr = document.createElement("tr");
    tr.className = "point q-" + p.quality;
    tr.dataset.key = p.key;
    tr.dataset.quality = p.quality;
    tr.append(
      cell(p.device), cell(p.name), described(cell(p.display_name, "display-name"), p.description),
      cell(value(p.value), "value"),
      cell(p.unit, "unit"), cell(p.quality, "quality"), cell(p.reason, "reason"), cell(p.code, "code"),
      cell(age(p.age_s), "age"),
    );
    return tr;
  });
  $("points").tBodies[0].replaceChildren(...rows);
  let count = s.points_matched + " of " + s.points_total + " points";
  if (s.points.length < s.points_matched) count += " (first " + s.points.length + " shown: filter to narrow)";
  $("count").textContent = count;
}

function render(s) {
  if (s.gateway) {
    const g = s.gateway;
    const site = g.site_display_name ? g.site_display_name + " (" + g.site + ")" : g.site;
    const gw = g.display_name ? g.display_name + " (" + g.id + ")" : g.id;
    $("gw-id").textContent = site + " / " + gw;
    $("gw-id").title = [g.site_description, g.description].filter(Boolean).join("\n");
  }
  const ready = $("ready");
  ready.textContent = s.ready ? "ready 就绪" : "not ready 未就绪";
  ready.className = "badge " + (s.ready ? "ok" : "fail");
  const checks = (s.checks || []).map((c) => {
    const li = document.createElement("li");
    li.className = c.ok ? "ok" : "fail";
    li.textContent = c.name + ": " + c.detail;
    return li;
  });
  $("checks").replaceChildren(...checks);
  if (s.devices) renderDevices(s.devices);
  if (s.points) renderPoints(s);
  if (s.buffer) {
    const b = s.buffer;
    fill($("buffer"), b.open ? [
      ["batches", b.batches], ["points", b.points], ["size", bytes(b.bytes) + " (" + (b.fill * 100).toFixed(1) + " %)"],
      ["oldest", age(b.oldest_age_s)], ["unsynced points", b.unsynced_points], ["dropped points", b.dropped_points],
      ["durability", b.durability], ["when full", b.when_full],
    ] : [["open", "no"], ["error", b.error]]);
  }
  if (s.uplink) {
    const u = s.uplink;
    $("uplink-card").className = "card " + (u.connected ? "up" : "down");
    fill($("uplink"), [
      ["state", u.connected ? "connected 已连接" : "disconnected 断开"], ["broker", u.broker],
      ["in flight", u.inflight_batches], ["published points", u.published_points],
      ["backlog points sent", u.historical_points], ["refused batches", u.rejected_batches],
      ["reconnects", u.reconnects], ["last error", u.last_error || "–"],
    ]);
  } else {
    $("buffer-card").classList.add("hidden");
    $("uplink-card").classList.add("hidden");
  }
  if (s.ingest) {
    const i = s.ingest;
    $("ingest-card").classList.remove("hidden");
    fill($("ingest"), [
      ["broker", i.connected ? "connected" : "disconnected"], ["messages", i.messages],
      ["written points", i.written_points], ["dead letters", i.dead_letter_messages + i.dead_letter_points],
      ["write retries", i.write_retries],
    ]);
  }
}

async function refresh() {
  clearTimeout(timer);
  const params = new URLSearchParams();
  const q = $("filter").value.trim();
  if (q) params.set("q", q);
  if ($("device-filter").value) params.set("device", $("device-filter").value);
  if ($("quality-filter").value) params.set("quality", $("quality-filter").value);
  try {
    const r = await fetch("/api/status?" + params.toString(), { cache: "no-store" });
    if (!r.ok) throw new Error("HTTP " + r.status);
    render(await r.json());
    $("updated").textContent = "updated " + new Date().toLocaleTimeString();
    $("updated").className = "muted";
  } catch (e) {
    $("updated").textContent = "no answer from the gateway (" + e.message + "); values are stale";
    $("updated").className = "badge stale";
  }
  timer = setTimeout(refresh, REFRESH_MS);
}

document.addEventListener("DOMContentLoaded", () => {
  // a link can carry a filter: /?q=ch4&quality=bad (a device is chosen once the list is known)
  const given = new URLSearchParams(location.search);
  $("filter").value = given.get("q") || "";
  $("quality-filter").value = given.get("quality") || "";
  if (given.get("device")) {
    const o = document.createElement("option");
    o.value = o.textContent = given.get("device");
    $("device-filter").append(o);
    $("device-filter").value = o.value;
  }
  let debounce = null;
  $("filter").addEventListener("input", () => { clearTimeout(debounce); debounce = setTimeout(refresh, 250); });
  $("device-filter").addEventListener("change", refresh);
  $("quality-filter").addEventListener("change", refresh);
  refresh();
});
