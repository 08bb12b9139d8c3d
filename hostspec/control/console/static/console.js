// The connector-host web console: one module, no framework, no build step.
//
// Every figure comes from the admin API's JSON routes, called with the bearer token the user gives
// once (kept in this tab's sessionStorage), so the roles and tenant rules are exactly the API's.
// Routes that a deployment may not have yet (GET /runs, /deadletters, /connections/{name}/delivery)
// are optional: an answer of 404 or 403 leaves their part of the page out, or filled the older way
// (503, not ready yet: the same until the next update).
// The page polls (every POLL_MS, or ?poll=<ms>), and never while the tab is hidden.
//
// Data is only ever put on the page as text (textContent, attributes), never as HTML.

const TOKEN_KEY = "connector-host.console.token";
const POLL_MS = Math.max(500, Number(new URLSearchParams(location.search).get("poll")) || 5000);
const PHASES = ["completed", "partial", "failed", "started", "progress", "queued", "skipped"];
const absent = new Set();          // optional routes this API does not serve (learned once)

// -- small helpers -------------------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "on") for (const [type, fn] of Object.entries(value)) node.addEventListener(type, fn);
    else if (key === "text") node.textContent = String(value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** Replace node's children (null, undefined and false left out, as in el()). */
function fill(node, ...children) {
  node.replaceChildren(...children.flat(Infinity).filter((c) => c !== undefined && c !== null && c !== false));
  return node;
}

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  for (const child of children.flat(Infinity)) if (child) node.append(child instanceof Node ? child : String(child));
  return node;
}

/** An ISO 8601 instant as "2026-03-01 12:00:05Z" (UTC whatever the browser's zone). */
function when(text) {
  if (!text) return "—";
  const t = new Date(text);
  return Number.isNaN(t.getTime()) ? String(text) : t.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}

function seconds(run) {
  if (!run.started_at || !run.ended_at) return null;
  return Math.max(0, (new Date(run.ended_at) - new Date(run.started_at)) / 1000);
}

function emitted(run) {
  const c = run.counts || {};
  return (c.courses_emitted || 0) + (c.stats_emitted || 0) + (c.courses_removed || 0);
}

function records(run) {
  return emitted(run) + ((run.counts || {}).rejected || 0);
}

function short(id) {
  return id ? String(id).slice(0, 8) : "—";
}

function count(value) {
  return value === undefined || value === null ? "—" : String(value);
}

const enc = encodeURIComponent;

// -- the API -------------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${token()}`, Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const answer = await fetch(path, {
    method, headers, cache: "no-store", body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await answer.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!answer.ok) {
    const message = (data && data.message) || `${answer.status} ${answer.statusText}`;
    if (answer.status === 401) signOut(`The API refused the token: ${message}`);
    throw new ApiError(answer.status, message);
  }
  return data;
}

/** GET a route this API may not serve (yet), or not to this token: null then. ``learn``: the
 *  answer says the route is absent (not that an object is), so ask no more until signed out:
 *  true for a fleet route, and for a connection's route when the connection is known to exist. */
async function optional(route, path, learn = !route.includes("{")) {
  if (absent.has(route)) return null;
  try {
    return await api("GET", path);
  } catch (error) {
    if (error.status === 404 || error.status === 403 || error.status === 405) {
      if (learn) absent.add(route);
      return null;
    }
    if (error.status === 503) return null;      // served, but not ready yet (e.g. delivery facts being read)
    throw error;
  }
}

// -- sign in and out -----------------------------------------------------------------------------

function signOut(reason) {
  sessionStorage.removeItem(TOKEN_KEY);
  absent.clear();                  // another token may be served what this one was not
  stopPolling();
  showSignIn(reason);
}

function showSignIn(reason) {
  document.getElementById("signout").hidden = true;
  fill(document.getElementById("live"));
  setCrumbs([]);
  const input = el("input", { id: "token", type: "password", autocomplete: "off", required: true,
                              placeholder: "bearer token", "aria-label": "API token" });
  const form = el("form", { class: "signin", id: "signin" },
    el("h1", { text: "Sign in" }),
    el("p", { class: "muted", text: "Give an API token (connector-host api tokens add …). It stays in this tab only." }),
    reason ? el("p", { class: "error", role: "alert", text: reason }) : null,
    input,
    el("button", { type: "submit", text: "Sign in" }));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, input.value.trim());
    try {
      await api("GET", "/");
    } catch (error) {
      if (error.status !== 401) showSignIn(`The API answered: ${error.message}`);
      return;
    }
    route();
  });
  fill(document.getElementById("main"), form);
  input.focus();
}

// -- page frame, notices, polling ----------------------------------------------------------------

function setCrumbs(parts) {
  const nav = document.getElementById("crumbs");
  fill(nav, ...parts.map((p) => (p.href ? el("a", { href: p.href, text: p.text }) : el("span", { text: p.text }))));
}

function notice(kind, ...content) {
  const box = document.getElementById("notice");
  if (!box) return;
  box.className = `notice ${kind}`;
  fill(box, ...content);
  box.hidden = false;
}

let timer = null;
let view = null;

function stopPolling() {
  if (timer) clearInterval(timer);
  timer = null;
  view = null;
}

function startPolling(current) {
  stopPolling();
  view = current;
  const tick = async () => {
    if (document.hidden || view !== current) return;
    if (current.busy) {             // asked during a refresh (a button): one more right after it
      current.again = true;
      return;
    }
    current.busy = true;
    const live = document.getElementById("live");
    try {
      await current.refresh();
      live.textContent = `live · updated ${new Date().toISOString().slice(11, 19)}Z`;
      live.className = "live ok";
    } catch (error) {
      live.textContent = error.status === 429 ? "rate limited: retrying" : `not updated: ${error.message}`;
      live.className = "live bad";
    } finally {
      current.busy = false;
    }
    if (current.again) {
      current.again = false;
      await tick();
    }
  };
  current.tick = tick;
  timer = setInterval(tick, POLL_MS);
  return tick();
}

// -- health --------------------------------------------------------------------------------------

function health(connection, last) {
  if (connection.paused) return ["paused", "paused"];
  if (!last) return ["no runs", "idle"];
  switch (last.phase) {
    case "completed": return ["healthy", "ok"];
    case "partial": return ["degraded", "warn"];
    case "failed": return ["failing", "bad"];
    case "skipped": return ["skipped", "idle"];
    default: return ["running", "run"];
  }
}

function badge(text, kind, testid) {
  return el("span", { class: `badge ${kind}`, "data-testid": testid, text });
}

function phaseBadge(phase) {
  return el("span", { class: `badge phase-${phase || "none"}`, text: phase || "—" });
}

// -- the fleet -----------------------------------------------------------------------------------

/** The newest run of each connection: from GET /runs when served, else each one's status. */
async function lastRuns(connections) {
  const page = await optional("/runs", "/runs?limit=1000");
  const last = new Map();
  if (page) {
    for (const run of page.items) if (run.phase !== "queued" && !last.has(run.connection)) last.set(run.connection, run);
    if (page.next_cursor === null) return last;      // every run seen: a connection not in it has none
  }
  await Promise.all(connections.filter((c) => !last.has(c.connection)).map(async (c) => {
    const status = await optional("/connections/{name}/status", `/connections/${enc(c.connection)}/status?limit=5`);
    const runs = status ? status.runs.filter((r) => r.phase !== "queued") : [];
    if (runs.length) last.set(c.connection, runs[runs.length - 1]);
  }));
  return last;
}

/** Delivered and dead-lettered counts: GET …/delivery when served, else the dead letters listed. */
async function deliveryOf(name) {
  // a connection of the list just read: a 404 or 403 is the route's (a role is refused a route whatever the connection)
  const delivery = await optional("/connections/{name}/delivery", `/connections/${enc(name)}/delivery`, true);
  if (delivery) return delivery;
  const letters = await optional("/connections/{name}/deadletters", `/connections/${enc(name)}/deadletters?limit=1000`, true);
  return { delivered: null, dead_lettered: letters ? letters.length : null, parked: null, last_delivered_at: null };
}

const FLEET_COLUMNS = [
  ["Connection", ""], ["Provider", ""], ["Health", "the last run's outcome, or paused"],
  ["Last run", "its phase and end"], ["Rejected", "records the last run refused (mapping, validation): its dead letters"],
  ["Delivered", "items the publisher delivered to the target"],
  ["Dead-lettered", "items the publisher could not deliver (where the API serves delivery health; else every dead letter listed)"],
  ["Revision", "of the connection's document"],
];

function fleetView() {
  setCrumbs([{ text: "Connections" }]);
  const body = el("div", { id: "fleet" }, el("p", { class: "muted", text: "Loading connections…" }));
  fill(document.getElementById("main"),
    el("section", {}, el("div", { class: "heading" }, el("h1", { text: "Connections" }),
      el("span", { class: "spacer" }),
      el("button", { type: "button", on: { click: () => view && view.tick() }, text: "Refresh" }))),
    el("div", { id: "notice", hidden: true }),
    body);
  return {
    async refresh() {
      const connections = await api("GET", "/connections");
      const [last, deliveries] = await Promise.all([
        lastRuns(connections),
        Promise.all(connections.map((c) => deliveryOf(c.connection))),
      ]);
      const delivery = new Map(connections.map((c, i) => [c.connection, deliveries[i]]));
      if (!connections.length) {
        fill(body, el("p", { class: "muted", text: "No connections this token may see." }));
        return;
      }
      const tenants = new Map();
      for (const c of connections) {
        const key = c.tenant || "(no tenant)";
        if (!tenants.has(key)) tenants.set(key, []);
        tenants.get(key).push(c);
      }
      const sections = [...tenants.keys()].sort().map((tenant) => {
        const rows = tenants.get(tenant).map((c) => {
          const run = last.get(c.connection);
          const [label, kind] = health(c, run);
          const d = delivery.get(c.connection) || {};
          return el("tr", { "data-connection": c.connection },
            el("td", {}, el("a", { href: `#/connections/${enc(c.connection)}`, text: c.connection })),
            el("td", { text: c.provider || "—" }),
            el("td", {}, badge(label, kind, "health")),
            el("td", {}, run ? phaseBadge(run.phase) : "—", " ", el("span", { class: "muted", text: run ? when(run.ended_at || run.started_at) : "" })),
            el("td", { class: "num", "data-testid": "rejected", text: run ? String((run.counts || {}).rejected || 0) : "—" }),
            el("td", { class: "num", "data-testid": "delivered", text: count(d.delivered) }),
            el("td", { class: "num", "data-testid": "dead-lettered", text: count(d.dead_lettered) }),
            el("td", { class: "num", text: String(c.revision) }));
        });
        return el("section", { class: "tenant" },
          el("h2", {}, "Tenant ", el("strong", { text: tenant }), el("span", { class: "muted", text: ` · ${rows.length} connection${rows.length === 1 ? "" : "s"}` })),
          el("table", { class: "grid fleet" },
            el("thead", {}, el("tr", {}, FLEET_COLUMNS.map(([h, title]) => el("th", { title, text: h })))),
            el("tbody", {}, rows)));
      });
      fill(body, ...sections);
    },
  };
}

// -- one connection ------------------------------------------------------------------------------

/** The runs to show, newest first: a queued request hidden once its run started (its re-drive
 *  note carried over to the run). */
function runsShown(runs) {
  const queued = new Map(runs.filter((r) => r.phase === "queued").map((r) => [r.request_id, r]));
  const ran = new Set(runs.filter((r) => r.phase !== "queued").map((r) => r.request_id));
  const shown = runs.filter((r) => r.phase !== "queued" || !ran.has(r.request_id)).map((r) => {
    const ask = r.phase !== "queued" ? queued.get(r.request_id) : null;
    return ask && ask.redrive_of && !r.redrive_of ? { ...r, redrive_of: ask.redrive_of } : r;
  });
  const key = (r) => r.started_at || r.ended_at || "9999";   // waiting requests first
  return shown.sort((a, b) => (key(a) < key(b) ? 1 : key(a) > key(b) ? -1 : 0));
}

function note(run) {
  if (run.redrive_of) return `re-drive of ${run.redrive_of.length} dead letter${run.redrive_of.length === 1 ? "" : "s"}`;
  if (run.merged_into) return `ran as part of ${short(run.merged_into)}`;
  if (run.error) return `${run.error.kind}: ${run.error.message}`;
  return "";
}

const CHART = { width: 720, height: 180, left: 44, bottom: 22, top: 10 };

/** Runs over time as bars (duration in seconds, or records), colored by phase. */
function chart(runs, metric) {
  const done = runs.filter((r) => r.started_at).sort((a, b) => (a.started_at < b.started_at ? -1 : 1)).slice(-40);
  const value = metric === "records" ? records : (r) => seconds(r) ?? 0;
  const { width, height, left, bottom, top } = CHART;
  const plot = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img",
                            "aria-label": `runs over time: ${metric}`, "data-testid": "runs-chart" });
  if (!done.length) {
    plot.append(svg("text", { x: width / 2, y: height / 2, "text-anchor": "middle", class: "axis" }, "no runs yet"));
    return plot;
  }
  const max = Math.max(1, ...done.map(value));
  const inner = height - bottom - top;
  const step = (width - left - 8) / done.length;
  const bar = Math.max(2, Math.min(48, step - 4));
  plot.append(
    svg("line", { x1: left, y1: top + inner, x2: width - 4, y2: top + inner, class: "axisline" }),
    svg("text", { x: left - 6, y: top + 8, "text-anchor": "end", class: "axis" }, metric === "records" ? String(max) : `${max.toFixed(1)}s`),
    svg("text", { x: left - 6, y: top + inner, "text-anchor": "end", class: "axis" }, "0"),
    svg("text", { x: left, y: height - 6, class: "axis" }, when(done[0].started_at)),
    svg("text", { x: width - 4, y: height - 6, "text-anchor": "end", class: "axis" }, when(done[done.length - 1].started_at)));
  done.forEach((run, i) => {
    const h = Math.max(2, (value(run) / max) * inner);
    plot.append(svg("rect", { x: left + i * step + (step - bar) / 2, y: top + inner - h, width: bar, height: h,
                              class: `bar phase-${run.phase}`, "data-phase": run.phase },
      svg("title", {}, `${when(run.started_at)} · ${run.phase} · ${seconds(run)?.toFixed(1) ?? "?"} s · ${records(run)} records`)));
  });
  return plot;
}

function legend() {
  return el("div", { class: "legend" }, PHASES.slice(0, 5).map((p) => el("span", {}, el("i", { class: `swatch phase-${p}` }), p)));
}

function connectionView(name) {
  setCrumbs([{ text: "Connections", href: "#/" }, { text: name }]);
  let metric = "duration";
  let lastRunsSeen = [];
  const selected = new Set();
  const head = el("div", { class: "heading" }, el("h1", { text: name }));
  const facts = el("dl", { class: "facts" });
  const chartBox = el("div", { class: "chartbox" });
  const runsBody = el("tbody", { id: "runs" });
  const lettersBox = el("div", { id: "deadletters" });
  const redriveResult = el("div", { id: "redrive-result", "data-testid": "redrive-result", hidden: true, role: "status" });
  const metricPick = el("select", { "aria-label": "chart metric", on: { change: () => { metric = metricPick.value; fill(chartBox, chart(lastRunsSeen, metric)); } } },
    el("option", { value: "duration", text: "duration (s)" }), el("option", { value: "records", text: "records" }));

  async function act(label, fn) {
    try {
      await fn();
      if (view) await view.tick();
    } catch (error) {
      if (error.status !== 401) notice("error", `${label}: ${error.message} (${error.status || "no answer"})`);
    }
  }

  const syncButton = el("button", { type: "button", id: "request-sync", on: { click: () => act("Request sync", async () => {
    const asked = await api("POST", `/connections/${enc(name)}/syncs`, {});
    notice("ok", `Sync requested: ${asked.request_id} (${asked.scope}, ${asked.mode})`);
  }) } }, "Request sync");
  const pauseButton = el("button", { type: "button", id: "pause" }, "Pause");
  pauseButton.addEventListener("click", () => act(pauseButton.textContent, async () => {
    const resume = pauseButton.dataset.paused === "true";
    await api("PUT", `/connections/${enc(name)}/${resume ? "resume" : "pause"}`);
    notice("ok", resume ? "Resumed: the schedule runs again." : "Paused: no scheduled runs until resumed.");
  }));

  async function redrive(ids) {
    await act("Re-drive", async () => {
      const plan = await api("POST", `/connections/${enc(name)}/deadletters/redrive`, { ids });
      const refused = Object.entries(plan.not_redriven || {});
      fill(redriveResult,
        el("strong", { text: `Re-drive accepted: ${plan.redriven.length} dead letter${plan.redriven.length === 1 ? "" : "s"} sent again` }),
        el("div", {}, "Requests: ", plan.requests.length ? plan.requests.map((id, i) => [i ? ", " : "", el("code", { class: "request-id", text: id })]) : "none"),
        refused.length ? el("div", { class: "error", text: `Not re-driven: ${refused.map(([id, why]) => `${short(id)} (${why})`).join("; ")}` }) : null);
      redriveResult.hidden = false;
      selected.clear();
    });
  }

  const redriveSelected = el("button", { type: "button", id: "redrive-selected", disabled: true,
                                         on: { click: () => redrive([...selected]) } }, "Re-drive selected");
  fill(document.getElementById("main"),
    head,
    el("div", { class: "actions" }, syncButton, pauseButton,
      el("button", { type: "button", on: { click: () => view && view.tick() } }, "Refresh")),
    el("div", { id: "notice", hidden: true, role: "status" }),
    facts,
    el("section", {}, el("div", { class: "heading" }, el("h2", { text: "Runs over time" }), el("span", { class: "spacer" }), metricPick),
      chartBox, legend()),
    el("section", {}, el("h2", { text: "Runs" }),
      el("table", { class: "grid" }, el("thead", {}, el("tr", {}, ["Started", "Duration", "Phase", "Scope", "Emitted", "Rejected", "Request", "Note"]
        .map((h) => el("th", { text: h })))), runsBody)),
    el("section", {}, el("div", { class: "heading" }, el("h2", { text: "Dead letters" }), el("span", { class: "spacer" }), redriveSelected),
      redriveResult, lettersBox));

  function renderLetters(letters) {
    if (letters === null) {
      fill(lettersBox, el("p", { class: "muted", text: "This token may not read dead letters." }));
      return;
    }
    if (!letters.length) {
      fill(lettersBox, el("p", { class: "muted", text: "No dead letters." }));
      return;
    }
    const known = new Set(letters.map((d) => d.id));
    for (const id of [...selected]) if (!known.has(id)) selected.delete(id);
    redriveSelected.disabled = selected.size === 0;
    const rows = letters.map((d) => {
      const box = el("input", { type: "checkbox", "aria-label": `select ${d.id}`, checked: selected.has(d.id) });
      box.addEventListener("change", () => {
        if (box.checked) selected.add(d.id); else selected.delete(d.id);
        redriveSelected.disabled = selected.size === 0;
      });
      const redone = d.redriven ? `${when(d.redriven.at)} by ${d.redriven.by}` : d.redriven === null ? "no" : "—";
      return el("tr", { "data-deadletter": d.id },
        el("td", {}, box),
        el("td", { class: "time", text: when(d.time) }),
        el("td", {}, el("span", { class: "badge stage", text: d.stage })),
        el("td", { class: "reason", text: d.reason }),
        el("td", { class: "record", text: d.record_id || "—" }),
        el("td", {}, el("code", { text: short(d.request_id) })),
        el("td", { text: redone }),
        el("td", {}, el("button", { type: "button", class: "redrive", on: { click: () => redrive([d.id]) } }, "Re-drive")));
    });
    fill(lettersBox, el("table", { class: "grid" },
      el("thead", {}, el("tr", {}, ["", "Time", "Stage", "Reason", "Record", "Request", "Re-driven", ""].map((h) => el("th", { text: h })))),
      el("tbody", {}, rows)));
  }

  return {
    async refresh() {
      const path = `/connections/${enc(name)}`;
      const [status, listed, fleetLetters] = await Promise.all([
        api("GET", `${path}/status?limit=50`),
        api("GET", "/connections"),
        optional("/deadletters", `/deadletters?connection=${enc(name)}&limit=200`),
      ]);
      // the status carries the delivery health (null: not read yet) where the API knows it
      const delivery = "delivery" in status ? status.delivery
        : await optional("/connections/{name}/delivery", `${path}/delivery`);
      const letters = fleetLetters ? fleetLetters.items
        : await optional("/connections/{name}/deadletters", `${path}/deadletters?limit=200`).then((l) => (l ? l.slice().reverse() : null));
      const row = listed.find((c) => c.connection === name) || {};
      const shown = runsShown(status.runs);
      const last = shown.find((r) => r.phase !== "queued");
      const [label, kind] = health({ paused: status.paused }, last);
      fill(head, el("h1", { text: name }), badge(label, kind, "health"), status.paused ? badge("paused", "paused", "paused") : null);
      pauseButton.textContent = status.paused ? "Resume" : "Pause";
      pauseButton.dataset.paused = String(Boolean(status.paused));
      const item = (term, value, testid) => [el("dt", { text: term }), el("dd", { "data-testid": testid, text: value })];
      fill(facts,
        ...item("Tenant", row.tenant || "—"), ...item("Provider", row.provider || "—"),
        ...item("Revision", String(status.revision)), ...item("Phase", status.phase || "—", "phase"),
        ...item("Delivered", delivery ? count(delivery.delivered) : "—", "delivered"),
        ...item(delivery ? "Dead-lettered at delivery" : "Dead letters", delivery ? count(delivery.dead_lettered) : count(letters && letters.length), "dead-lettered"),
        ...item("Parked", delivery ? count(delivery.parked) : "—"),
        ...item("Last delivered", delivery ? when(delivery.last_delivered_at) : "—"),
        ...(delivery && delivery.verdict ? item("Delivery", delivery.verdict, "verdict") : []));
      lastRunsSeen = status.runs;
      fill(chartBox, chart(status.runs, metric));
      fill(runsBody, ...(shown.length ? shown.map((r) => el("tr", { "data-request": r.request_id || "", "data-phase": r.phase },
        el("td", { class: "time", text: when(r.started_at) }),
        el("td", { class: "num", text: seconds(r) === null ? "—" : `${seconds(r).toFixed(1)} s` }),
        el("td", {}, phaseBadge(r.phase)),
        el("td", { text: r.scope || "—" }),
        el("td", { class: "num", text: String(emitted(r)) }),
        el("td", { class: "num", text: String((r.counts || {}).rejected || 0) }),
        el("td", {}, el("code", { title: r.request_id || "", text: short(r.request_id) })),
        el("td", { class: "note", text: note(r) })))
        : [el("tr", {}, el("td", { colspan: 8, class: "muted", text: "No runs yet." }))]));
      renderLetters(letters);
    },
  };
}

// -- routing -------------------------------------------------------------------------------------

function route() {
  if (!token()) {
    showSignIn();
    return;
  }
  document.getElementById("signout").hidden = false;
  const match = location.hash.match(/^#\/connections\/([^/]+)$/);
  const current = match ? connectionView(decodeURIComponent(match[1])) : fleetView();
  startPolling(current).catch(() => {});
}

document.getElementById("signout").addEventListener("click", () => signOut());
window.addEventListener("hashchange", route);
document.addEventListener("visibilitychange", () => { if (!document.hidden && view) view.tick(); });
route();
