// fixproxy risk dashboard. Plain JavaScript, served by the proxy; nothing is fetched from elsewhere.
//
// Data: GET /api/v1/summary (sessions, trading states, limits, positions, exposure, position limits, order counts; in
// a cluster of proxies, GET /api/v1/cluster too; in an active/passive pair, GET /api/v1/ha, every HA_MS too), one
// page of /api/v1/orders (open orders, ORDER_PAGE at a time) and /api/v1/exposure-history, re-fetched when the event stream (/api/v1/events, read with fetch() because
// EventSource cannot send an Authorization header) says something happened, at most every 500 ms, and
// every 10 s regardless. Recent decisions, alerts, admin actions and notices arrive on the stream itself.
// Every value from the proxy is put on the page as text (textContent), never as HTML.
"use strict";

(() => {
  const API = "/api/v1";
  const TOKEN_KEY = "fixproxy.token";
  const THROTTLE_MS = 500;      // at most one summary fetch per this long
  const SETTLE_MS = 1500;       // one more fetch this long after the last event (fills follow acks)
  const PERIODIC_MS = 10000;    // and one at least this often
  const HA_MS = 1000;           // in an active/passive pair, the HA view (role, copy lag) this often
  const STREAM_IDLE_MS = 40000; // heartbeats come every 15 s: silence this long means the stream is dead
  const KEEP = 200;             // recent items kept per list
  const ORDER_PAGE = 200;       // open orders shown per page (GET /orders?limit=&after=)
  const ACTIONS = {
    halt: { label: "Halt", short: "Halt", verb: "Halt", text: "New orders and replaces in {scope} are refused with HALTED; cancels still pass." },
    halt_and_cancel: { label: "Halt & cancel", short: "Halt+cancel", verb: "Halt and cancel", text: "New orders and replaces in {scope} are refused with HALTED, and every working order in it is cancelled at the venues." },
    reducing: { label: "Reduce only", short: "Reduce", verb: "Set reduce only", text: "Only orders that shrink a position pass in {scope}; the rest are refused with REDUCING_ONLY." },
    resume: { label: "Resume", short: "Resume", verb: "Resume", text: "{scope} goes back to ACTIVE: its orders are checked by the risk rules as usual." },
  };
  const UTIL_NAMES = { max_gross_exposure: "gross", max_net_exposure: "net", max_open_orders: "open orders", max_sector_pct: "sector share" };
  // Anomaly detectors (AnomalyAlert, in the alerts feed with a "detector" field) and what they did.
  const ANOMALY_NAMES = { order_rate: "order rate spike", cancel_ratio: "cancel ratio", reject_ratio: "reject ratio",
    repeated_rejects: "repeated rejects", fat_finger: "fat finger", price_walk: "price walk" };
  const ANOMALY_ACTS = { reducing: "scope set REDUCING", halt: "scope HALTED" };

  const $ = (id) => document.getElementById(id);
  const state = {
    token: "", who: null, levels: [70, 90], canAct: false, limitFields: [],
    summary: null, history: [], historyNow: 0, lastT: 0,
    orders: [], orderPages: [""],  // the page shown, and the key each page starts after (first: "")
    decisions: [], alerts: [], activity: [], seen: new Set(),
    rendered: {}, stream: null, streamGen: 0,
    timers: { throttle: null, settle: null, periodic: null, ha: null }, lastFetch: 0, fetching: false, again: false,
    ha: null,  // GET /api/v1/ha's view, in an active/passive pair
  };

  // ------------------------------------------------------------ small helpers

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  const fmt = new Intl.NumberFormat("en-US", { maximumFractionDigits: 2 });
  function num(text) {
    if (text === "" || text === null || text === undefined) return "";
    const n = Number(text);
    return Number.isFinite(n) ? fmt.format(n) : String(text);
  }
  function compact(n) {
    const a = Math.abs(n);
    if (a >= 1e9) return (n / 1e9).toFixed(a >= 1e10 ? 0 : 1) + "B";
    if (a >= 1e6) return (n / 1e6).toFixed(a >= 1e7 ? 0 : 1) + "M";
    if (a >= 1e3) return (n / 1e3).toFixed(a >= 1e4 ? 0 : 1) + "k";
    return String(Math.round(n));
  }
  function clock(ns) {
    if (!ns) return "";
    const d = new Date(ns / 1e6);
    return d.toLocaleTimeString([], { hour12: false });
  }
  function stateOf(scope) {
    const s = (state.summary?.trading_states || []).find((x) => x.scope === scope);
    return s ? s.state : "ACTIVE";
  }
  function numCell(text, extra) {
    const cls = "num" + (String(text).startsWith("-") ? " neg" : "") + (extra ? " " + extra : "");
    return el("td", { class: cls, text: num(text) });
  }

  // A table from header names and rows of cells; rebuilt only when its data changed.
  function table(id, key, headers, rows, empty) {
    const sig = JSON.stringify(key);
    if (state.rendered[id] === sig) return;
    state.rendered[id] = sig;
    const t = $(id);
    const head = el("thead", {}, el("tr", {}, headers.map((h) => el("th", { class: h.startsWith("#") ? "num" : "", text: h.replace(/^#/, "") }))));
    const body = el("tbody");
    if (!rows.length) body.append(el("tr", {}, el("td", { class: "empty", colspan: headers.length, text: empty })));
    for (const r of rows) body.append(r);
    t.replaceChildren(head, body);
  }

  // ------------------------------------------------------------ the API

  class AuthError extends Error {}

  async function api(path, options = {}) {
    const headers = { Authorization: "Bearer " + state.token, ...(options.body ? { "Content-Type": "application/json" } : {}) };
    const response = await fetch(API + path, { ...options, headers, cache: "no-store" });
    let body = null;
    try { body = await response.json(); } catch (e) { body = null; }
    if (response.status === 401) throw new AuthError((body && body.error) || "the token was refused");
    if (!response.ok && !(body && body.ok === false)) throw new Error((body && body.error) || `HTTP ${response.status}`);
    return body;
  }

  function post(path, payload) {
    return api(path, { method: "POST", body: JSON.stringify(payload) });
  }

  function banner(text) {
    const b = $("banner");
    b.textContent = text || "";
    b.hidden = !text;
  }

  // ------------------------------------------------------------ login

  async function login(token) {
    state.token = token;
    let who;
    try {
      who = await api("/whoami");
    } catch (e) {
      state.token = "";
      sessionStorage.removeItem(TOKEN_KEY);
      showLogin(e instanceof AuthError ? "That token is not accepted by the proxy." : "Cannot reach the proxy: " + e.message);
      return;
    }
    sessionStorage.setItem(TOKEN_KEY, token);
    state.who = who;
    state.canAct = who.role === "risk" || who.role === "admin";
    const levels = (who.alert_levels || []).map(Number).filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
    state.levels = levels;
    $("levels").textContent = levels.length ? `(alert levels ${levels.join("% / ")}%)` : "(no alert levels)";
    $("who").textContent = `${who.name} · ${who.role}`;
    $("scope-form").hidden = !state.canAct;
    $("login").hidden = true;
    $("app").hidden = false;
    document.body.dataset.role = who.role;
    if (state.canAct) loadLimitFields();
    renderLimitButtons();
    await refresh();
    connect();
    state.timers.periodic = setInterval(() => schedule(0), PERIODIC_MS);
    state.timers.ha = setInterval(refreshHa, HA_MS);
  }

  function logout(message) {
    state.token = "";
    sessionStorage.removeItem(TOKEN_KEY);
    if (state.stream) state.stream.abort();
    state.stream = null;
    state.streamGen++;
    for (const t of Object.values(state.timers)) { clearTimeout(t); clearInterval(t); }
    state.timers = { throttle: null, settle: null, periodic: null, ha: null };
    Object.assign(state, { who: null, summary: null, ha: null, history: [], lastT: 0, decisions: [], alerts: [], activity: [], seen: new Set(), rendered: {}, orders: [], orderPages: [""] });
    $("app").hidden = true;
    showLogin(message || "");
  }

  function showLogin(message) {
    $("app").hidden = true;
    $("login").hidden = false;
    $("login-error").textContent = message || "";
    $("token").value = "";
    $("token").focus();
  }

  async function loadLimitFields() {
    try {
      const doc = await fetch(API + "/openapi.json").then((r) => r.json());
      state.limitFields = Object.keys(doc.components.schemas.Limits.properties).filter((f) => f !== "monitor");
    } catch (e) {
      state.limitFields = [];
    }
  }

  // ------------------------------------------------------------ live: the event stream

  async function connect() {
    const gen = ++state.streamGen;
    let delay = 1000;
    while (gen === state.streamGen && state.token) {
      const controller = new AbortController();
      state.stream = controller;
      let idle = null;
      const touch = () => { clearTimeout(idle); idle = setTimeout(() => controller.abort(), STREAM_IDLE_MS); };
      try {
        const response = await fetch(API + "/events", {
          headers: { Authorization: "Bearer " + state.token, Accept: "text/event-stream" },
          cache: "no-store", signal: controller.signal,
        });
        if (response.status === 401) { logout("The proxy no longer accepts this token."); return; }
        if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
        touch();
        setLive(true);
        delay = 1000;
        await loadRecent(); // anything missed while not connected
        schedule(0);
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          touch();
          buffer += value;
          let cut;
          while ((cut = buffer.search(/\r?\n\r?\n/)) >= 0) {
            const block = buffer.slice(0, cut);
            buffer = buffer.slice(cut).replace(/^\r?\n\r?\n/, "");
            dispatch(block);
          }
        }
      } catch (e) {
        // aborted, network error or the proxy went away: reconnect below
      } finally {
        clearTimeout(idle);
      }
      if (gen !== state.streamGen) return;
      setLive(false);
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 10000);
    }
  }

  function setLive(on) {
    const live = $("live");
    live.className = "live " + (on ? "on" : "off");
    live.textContent = on ? "live" : "reconnecting…";
  }

  function dispatch(block) {
    let event = "message";
    const data = [];
    for (const line of block.split(/\r?\n/)) {
      if (line.startsWith(":")) continue; // a comment: connected, heartbeat
      const i = line.indexOf(":");
      const field = i < 0 ? line : line.slice(0, i);
      const value = i < 0 ? "" : line.slice(i + 1).replace(/^ /, "");
      if (field === "event") event = value;
      else if (field === "data") data.push(value);
    }
    if (!data.length) return;
    let item;
    try { item = JSON.parse(data.join("\n")); } catch (e) { return; }
    addItem(event, item, true);
    renderFeeds();
    schedule(0); // at once, unless a fetch happened less than THROTTLE_MS ago
    clearTimeout(state.timers.settle);
    state.timers.settle = setTimeout(() => schedule(0), SETTLE_MS);
  }

  function itemKey(kind, it) {
    return [kind, it.now_ns, it.session, it.cl_ord_id, it.msg_type, it.scope, it.kind, it.limit_name, it.detail, it.detector, it.rule].join("|");
  }

  function addItem(kind, item, fresh) {
    const key = itemKey(kind, item);
    if (state.seen.has(key)) return;
    state.seen.add(key);
    item._fresh = fresh ? Date.now() : 0;
    const list = kind === "decision" ? state.decisions : kind === "alert" ? state.alerts : kind === "admin" || kind === "notice" ? state.activity : null;
    if (!list) return;
    item._kind = kind;
    list.push(item);
    list.sort((a, b) => b.now_ns - a.now_ns);
    if (list.length > KEEP) list.length = KEEP;
  }

  async function loadRecent() {
    try {
      const [decisions, alerts, actions] = await Promise.all([
        api("/decisions?limit=100"), api("/alerts?limit=50"), api("/admin-actions?limit=50")]);
      for (const d of decisions) addItem("decision", d, false);
      for (const a of alerts) addItem("alert", a, false);
      for (const a of actions) addItem("admin", a, false);
      if (state.seen.size > 5000) state.seen = new Set([...state.decisions, ...state.alerts, ...state.activity].map((i) => itemKey(i._kind, i)));
      renderFeeds();
    } catch (e) {
      if (e instanceof AuthError) logout("The proxy no longer accepts this token.");
    }
  }

  // ------------------------------------------------------------ refreshing the summary

  // Fetch the summary no sooner than `wait` ms from now and no sooner than THROTTLE_MS after the last fetch.
  function schedule(wait) {
    if (state.timers.throttle) return;
    const due = Math.max(wait, state.lastFetch + THROTTLE_MS - Date.now(), 0);
    state.timers.throttle = setTimeout(() => { state.timers.throttle = null; refresh(); }, due);
  }

  async function refresh() {
    if (!state.token) return;
    if (state.fetching) { state.again = true; return; }
    state.fetching = true;
    state.lastFetch = Date.now();
    try {
      const after = state.orderPages[state.orderPages.length - 1];
      const [summary, history, orders, modes] = await Promise.all([
        api("/summary"), api("/exposure-history?since_ns=" + Math.floor(state.lastT)),
        api("/orders?limit=" + ORDER_PAGE + (after ? "&after=" + encodeURIComponent(after) : "")), api("/modes")]);
      state.summary = summary;
      state.modes = modes;
      // In a cluster of proxies, the firm-wide picture too (one more read, only then).
      const clustered = ((summary.health || {}).cluster || {}).state;
      state.cluster = clustered && clustered !== "disabled" ? await api("/cluster") : null;
      state.ha = haOn(summary) ? await api("/ha") : null;
      state.orders = orders;
      if (!orders.length && state.orderPages.length > 1) { state.orderPages = [""]; state.again = true; }
      for (const p of history.points) {
        if (p.t_ns > state.lastT) { state.history.push(p); state.lastT = p.t_ns; }
      }
      state.historyNow = history.now_ns;
      banner("");
      render();
      $("updated").textContent = "updated " + new Date().toLocaleTimeString([], { hour12: false });
    } catch (e) {
      if (e instanceof AuthError) { logout("The proxy no longer accepts this token."); return; }
      banner("Cannot refresh from the proxy: " + e.message);
    } finally {
      state.fetching = false;
      if (state.again) { state.again = false; schedule(THROTTLE_MS); }
    }
  }

  // ------------------------------------------------------------ rendering

  function render() {
    const s = state.summary;
    if (!s) return;
    const firm = stateOf("firm");
    const badge = $("firm-state");
    badge.className = "badge " + firm;
    badge.textContent = firm;
    if (state.rendered.firmActions !== firm + state.canAct) {
      state.rendered.firmActions = firm + state.canAct;
      $("firm-actions").replaceChildren(...actionButtons("firm", true));
    }
    renderRecording(s.health);
    renderCluster(s);
    renderHa(s);
    renderSessions(s);
    renderStates(s);
    renderUtilization(s);
    renderExposure(s);
    renderOrders(s);
    renderPositions(s);
    renderLimits(s);
    renderModes();
    renderChart();
    renderScopeList(s);
  }

  // The journal and the audit follower: a failed journal refuses new orders (banner, red badge); a
  // follower that is dead, stuck or behind loses nothing (amber badge).
  function renderRecording(health) {
    const b = $("recording-state");
    if (!health) { b.textContent = ""; return; }
    const journal = health.journal || {}, audit = health.audit || {};
    if (journal.state === "failed") {
      b.className = "badge red";
      b.textContent = "FAILED";
      b.title = journal.reason;
      $("banner").textContent = "Recording failed: " + journal.reason + ". New orders are refused (cancels pass) " +
        "until there is room and a risk user resumes (fixproxy resume-recording).";
      $("banner").hidden = false;
      return;
    }
    const degraded = audit.state && audit.state !== "ok" && audit.state !== "disabled";
    b.className = "badge " + (degraded ? "amber" : "up");
    b.textContent = degraded ? "audit " + audit.state : "ok";
    b.title = degraded ? "the audit follower is " + audit.state + "; nothing is lost, it catches up from the journal"
                       : "journal segment " + journal.segment + ", sync " + journal.sync;
  }

  // The kill-switch buttons for a scope (none for a viewer); `full` labels in the header, short ones in tables.
  function actionButtons(scope, full = false) {
    if (!state.canAct) return [];
    const current = stateOf(scope);
    const hide = { HALTED: "halt", REDUCING: "reducing", ACTIVE: "resume" }[current];
    return Object.entries(ACTIONS).filter(([a]) => a !== hide).map(([action, spec]) =>
      el("button", { type: "button", class: "act-" + action, "data-action": action, "data-scope": scope,
                     title: `${spec.verb} ${scope}…`, onclick: () => confirmKill(scope, action) }, full ? spec.label : spec.short));
  }

  function renderSessions(s) {
    const rows = [];
    for (const o of s.sessions.oms) {
      const scope = "session:" + o.name;
      const st = stateOf(scope);
      rows.push(el("tr", { "data-session": o.name },
        el("td", { class: "nowrap" }, o.name, " ", el("span", { class: "muted small", text: "OMS" })),
        el("td", {}, el("span", { class: "badge " + (o.up ? "up" : "down"), text: o.up ? "up" : "down" })),
        el("td", {}, el("span", { class: "badge " + st, text: st })),
        state.canAct ? el("td", {}, el("span", { class: "actions" }, actionButtons(scope))) : null));
    }
    for (const v of s.sessions.venues) {
      rows.push(el("tr", { "data-session": v.name },
        el("td", { class: "nowrap" }, v.name, " ", el("span", { class: "muted small", text: "venue" })),
        el("td", {}, el("span", { class: "badge " + (v.up ? "up" : "down"), text: v.up ? "up" : "down" })),
        el("td"), state.canAct ? el("td") : null));
    }
    for (const d of s.sessions.drop_copies || []) {
      rows.push(el("tr", { "data-session": d.name },
        el("td", { class: "nowrap" }, d.name, " ", el("span", { class: "muted small", text: "drop copy" })),
        el("td", {}, el("span", { class: "badge " + (d.up ? "up" : "down"), text: d.up ? "up" : "down" })),
        el("td"), state.canAct ? el("td") : null));
    }
    table("sessions", [s.sessions, s.trading_states, state.canAct],
      ["Session", "Status", "State", ...(state.canAct ? ["Actions"] : [])], rows, "no sessions configured");
  }

  function renderStates(s) {
    const rows = s.trading_states.map((t) => el("tr", { "data-scope": t.scope },
      el("td", {}, t.scope, el("div", { class: "sub wrap", text: t.reason })),
      el("td", {}, el("span", { class: "badge " + t.state, text: t.state })),
      el("td", {}, clock(t.since_ns), el("div", { class: "sub", text: t.operator })),
      state.canAct ? el("td", {}, el("span", { class: "actions" }, actionButtons(t.scope))) : null));
    table("states", [s.trading_states, state.canAct],
      ["Scope and reason", "State", "Since, by", ...(state.canAct ? ["Actions"] : [])], rows, "every scope is ACTIVE");
  }

  // Monitor mode let this order go on; the rule (or a monitored limit) would have refused it.
  function wouldRefuseRow(d) {
    const why = d.code && d.text.startsWith(d.code + ": ") ? d.text.slice(d.code.length + 2) : d.text;
    return el("tr", { "data-would-refuse": `${d.session}|${d.cl_ord_id}|${d.code}`, class: "would-refuse " + fresh(d) },
      el("td", { class: "nowrap", text: clock(d.now_ns) }), el("td", { text: d.session }),
      el("td", { text: d.msg_type }), el("td", { text: d.cl_ord_id }), el("td", { text: d.account }),
      el("td", { text: d.symbol }),
      el("td", {}, el("span", { class: "badge monitor", title: "monitor mode: the order went on", text: "would refuse " + d.code })),
      el("td", { class: "text", title: `rule ${d.rule}, ${d.scope}: observed ${d.observed}, limit ${d.limit}`,
                 text: `would have refused (monitor mode, ${d.rule}): ${why}` }));
  }

  function anomalyRow(a) {
    const acted = ANOMALY_ACTS[a.action];
    return el("tr", { class: fresh(a), "data-detector": a.detector },
      el("td", { class: "nowrap", text: clock(a.now_ns) }), el("td", { text: a.scope }),
      el("td", { text: "anomaly: " + (ANOMALY_NAMES[a.detector] || a.detector) }),
      el("td", {}, el("span", { class: "badge " + (acted ? "red" : "amber"), title: "threshold " + a.threshold, text: a.observed })),
      el("td", { class: "text", title: a.text, text: acted ? `${a.text} (${acted})` : a.text }));
  }

  function levelClass(pct) {
    const lv = state.levels;
    if (pct >= 100) return "red";
    if (lv.length >= 2 && pct >= lv[lv.length - 1]) return "red";
    if (lv.length >= 1 && pct >= lv[0]) return "amber";
    return "";
  }

  // Sector share of gross against max_sector_pct, for the layers that set it. The proxy checks a layer's
  // share only once that scope's gross reaches the layer's sector_min_gross (a layer without one takes the
  // firm's; an account's may also take its order's session's, which one bar cannot show): below it the
  // bar is neutral (grey, never amber or red) and says so.
  function sectorUtilization(s) {
    const out = [];
    const layerOf = (scope) => {
      if (scope === "firm") return s.limits.firm;
      const [kind, name] = scope.split(/:(.*)/s);
      return ({ session: s.limits.sessions, account: s.limits.accounts }[kind] || {})[name];
    };
    for (const e of s.exposure) {
      const layer = layerOf(e.scope);
      const limit = layer && Number(layer.max_sector_pct);
      const gross = Number(e.gross);
      if (!limit || !gross) continue;
      const [sector, value] = Object.entries(e.sectors).sort((a, b) => Number(b[1]) - Number(a[1]))[0] || [];
      if (!sector) continue;
      const share = Number(value) * 100 / gross;
      const floor = Number(layer.sector_min_gross || (e.scope !== "firm" && s.limits.firm.sector_min_gross) || 0);
      const idle = floor > 0 && gross < floor;
      out.push({ scope: e.scope, name: "max_sector_pct", label: `${UTIL_NAMES.max_sector_pct} (${sector})`,
                 pct: share * 100 / limit, observed: share.toFixed(1) + "%", limit: limit + "%",
                 idle: idle ? `checked above ${compact(floor)}` : "",
                 title: idle ? `${e.scope} gross ${compact(gross)} is below its sector_min_gross ${compact(floor)}: the sector rule does not fire yet` : "" });
    }
    return out;
  }

  // Each account's position in a symbol, working orders included (as the max_position rule counts it),
  // against max_long_position / max_short_position as resolved for that account and symbol.
  function positionUtilization(s) {
    const out = [];
    for (const p of s.position_limits || []) {
      for (const [side, u] of [["long", p.long], ["short", p.short]]) {
        if (!u || !(Number(u.observed) > 0)) continue;
        out.push({ scope: "account:" + p.account, name: `max_${side}_position`, key: `account:${p.account}|max_${side}_position|${p.symbol}`,
                   label: `${side} ${p.symbol}`, pct: Number(u.utilization_pct), observed: num(u.observed), limit: num(u.limit),
                   title: `position ${num(p.position)}, working buys ${num(p.working_buy)}, sells ${num(p.working_sell)}; limit from ${u.scope}` });
      }
    }
    return out;
  }

  function renderUtilization(s) {
    const bars = [];
    for (const e of s.exposure) {
      for (const [name, u] of Object.entries(e.limits || {})) {
        bars.push({ scope: e.scope, name, label: UTIL_NAMES[name] || name, pct: Number(u.utilization_pct),
                    observed: name === "max_open_orders" ? u.observed : compact(Number(u.observed)),
                    limit: name === "max_open_orders" ? u.limit : compact(Number(u.limit)) });
      }
    }
    bars.push(...sectorUtilization(s), ...positionUtilization(s));
    bars.sort((a, b) => !!a.idle - !!b.idle || b.pct - a.pct);
    const sig = JSON.stringify([bars, state.levels]);
    if (state.rendered.utilization === sig) return;
    state.rendered.utilization = sig;
    const box = el("div", { class: "util" });
    if (!bars.length) box.append(el("span", { class: "muted", text: "no aggregate limit set on a scope with exposure" }));
    for (const b of bars) {
      const cls = b.idle ? "idle" : levelClass(b.pct);
      const meter = el("div", { class: "meter", role: "meter", "aria-valuenow": b.pct.toFixed(1), "aria-valuemin": 0, "aria-valuemax": 100 });
      const fill = el("div", { class: "fill " + cls });
      fill.style.width = Math.min(100, Math.max(0, b.pct)) + "%";
      meter.append(fill);
      for (const lv of state.levels) {
        const tick = el("div", { class: "tick" });
        tick.style.left = lv + "%";
        meter.append(tick);
      }
      box.append(
        el("div", { class: "name", title: b.title || `${b.scope} ${b.name}` }, el("b", { text: b.scope }), " ", b.label),
        meter,
        el("div", { class: "value " + cls, "data-util": b.key || `${b.scope}|${b.name}`, "data-level": cls || "ok",
                    title: b.title, text: `${b.pct.toFixed(1)}% (${b.observed} / ${b.limit})` },
          b.idle ? el("span", { class: "reason", text: " · " + b.idle }) : null));
    }
    $("utilization").replaceChildren(box);
  }

  function renderExposure(s) {
    const rows = s.exposure.map((e) => {
      const st = stateOf(e.scope);
      return el("tr", { "data-scope": e.scope },
        el("td", { text: e.scope }),
        el("td", {}, el("span", { class: "badge " + st, text: st })),
        numCell(e.gross), numCell(e.net), numCell(e.net_long), numCell(e.net_short),
        el("td", { class: "num", text: e.open_orders }),
        state.canAct ? el("td", {}, el("span", { class: "actions" }, actionButtons(e.scope))) : null);
    });
    table("exposure", [s.exposure, s.trading_states, state.canAct],
      ["Scope", "State", "#Gross", "#Net", "#Net long", "#Net short", "#Open", ...(state.canAct ? ["Actions"] : [])],
      rows, "no exposure yet");
  }

  function pageOrders(step) {
    if (step > 0 && state.orders.length) state.orderPages.push(state.orders[state.orders.length - 1].key);
    else if (step < 0 && state.orderPages.length > 1) state.orderPages.pop();
    else return;
    schedule(0);
  }

  // A cluster of proxies ([cluster]): every instance with its sessions and its usage of each shared limit,
  // each shared limit with every instance's share, and a banner while this instance has lost the cluster's
  // database or is fenced off new headroom (the cause, from /healthz's cluster part).
  function renderCluster(s) {
    const health = (s.health || {}).cluster || {};
    const on = !!health.state && health.state !== "disabled";
    $("panel-cluster").hidden = !on;
    const cb = $("cluster-banner");
    let cause = "";
    if (on && health.database === "lost") {
      cause = "Cluster database lost: " + (health.reason || "unreachable") + ". ";
      cause += health.fenced ? "" : "This instance trades within the leases it holds until they expire" +
        (health.leases_expire_in_s !== null && health.leases_expire_in_s !== undefined
          ? " (in " + Number(health.leases_expire_in_s).toFixed(1) + " s)" : "") + ". ";
    }
    if (on && health.fenced) {
      cause += "Fenced: " + health.fenced + ". Orders that need new headroom of a shared limit are refused.";
    }
    cb.textContent = cause.trim();
    cb.hidden = !cause;
    cb.dataset.cause = !on ? "" : health.fenced ? "fenced" : health.database === "lost" ? "database" : "";
    if (!on) return;
    const view = state.cluster || { instances: [], limits: [] };
    $("cluster-me").textContent = "(this instance: " + (view.instance || health.instance || "") + ")";
    const limitOf = new Map((view.limits || []).map((l) => [l.key, l]));
    const now = Date.now();
    const rows = (view.instances || []).map((i) => {
      const st = i.status || {};
      const sessions = st.sessions || [];
      const up = sessions.filter((x) => x.up).length;
      const age = (now - Date.parse(i.heartbeat)) / 1000;
      const bars = Object.entries(st.usage || {}).sort().map(([key, u]) => {
        const l = limitOf.get(key);
        const cap = l ? Number(l.limit) : 0;
        const pct = (v) => cap > 0 ? Math.min(100, Math.max(0, Number(v) * 100 / cap)) : 0;
        const meter = el("div", { class: "meter", role: "meter", "aria-valuenow": pct(u.used).toFixed(1),
                                  "aria-valuemin": 0, "aria-valuemax": 100 });
        const allow = el("div", { class: "allow" });
        allow.style.width = pct(u.allowance) + "%";
        const used = el("div", { class: "used" });
        used.style.width = pct(u.used) + "%";
        meter.append(allow, used);
        const [field, scope] = key.split("|");
        return el("span", { class: "share", "data-share": key, title: `${scope} ${field}: used ${u.used}, ` +
                            `allowance ${u.allowance}` + (l ? `, limit ${l.limit}` : "") },
          meter, el("span", { class: "value", text: `${scope} ${UTIL_NAMES[field.split(":")[0]] || field}` +
                              (field.includes(":") ? " " + field.split(":")[1] : "") +
                              ` ${compact(Number(u.used))} / ${compact(Number(u.allowance))}` +
                              (cap ? ` of ${compact(cap)}` : "") }));
      });
      const fenced = !!st.fenced;
      return el("tr", { "data-instance": i.instance },
        el("td", { class: "nowrap" }, i.instance, i.instance === view.instance
          ? el("span", { class: "muted small", text: " this" }) : null),
        el("td", {}, el("span", { class: "badge " + (i.alive ? "up" : "down"), text: i.alive ? "alive" : "gone" }),
          fenced ? el("span", { class: "badge red", title: st.fenced, text: "fenced" }) : null),
        el("td", { class: "num", text: Number.isFinite(age) ? Math.max(0, age).toFixed(1) + " s" : "" }),
        el("td", { class: "num", "data-sessions": `${up}/${sessions.length}`, text: `${up}/${sessions.length}`,
                   title: sessions.map((x) => `${x.name} ${x.role} ${x.up ? "up" : "down"}`).join(", ") }),
        numCell(String(st.open_orders ?? "")),
        el("td", { text: (st.health || "") + (st.engine ? " · " + st.engine : "") }),
        el("td", {}, bars.length ? bars : el("span", { class: "muted", text: "no share held" })));
    });
    table("cluster-instances", [view.instances, view.limits, Math.floor(now / 1000)],
      ["Instance", "State", "#Heartbeat age", "#Sessions up", "#Open orders", "Health", "Shared limits"],
      rows, "no instance has written its status yet");
    const limitRows = (view.limits || []).map((l) => {
      const shares = l.shares || [];
      const sum = (f) => shares.reduce((a, x) => a + Number(x[f]), 0);
      return el("tr", { "data-limit": l.key },
        el("td", { text: l.scope }), el("td", { text: l.field }), numCell(l.limit),
        numCell(String(sum("allowance"))), numCell(String(sum("used"))),
        el("td", { text: shares.map((x) => `${x.instance} ${num(x.used)} / ${num(x.allowance)}` +
                                         (x.lease_live ? "" : " (lease expired)")).join(", ") }));
    });
    table("cluster-limits", view.limits, ["Scope", "Shared limit", "#Limit", "#Allowances", "#Used",
      "Each instance (used / allowance)"], limitRows, "no shared limit");
  }

  // An active/passive pair ([ha]): this instance's role, the partner, the copy's state and lag, read every
  // HA_MS (GET /api/v1/ha holds no core lock); a banner while this instance is fenced, or while it is the
  // active and no standby has the copy.
  function haOn(s) {
    const st = (((s || {}).health || {}).ha || {}).state;
    return !!st && st !== "disabled";
  }

  async function refreshHa() {
    if (!state.token || !haOn(state.summary)) return;
    try {
      state.ha = await api("/ha");
      renderHa(state.summary);
    } catch (e) {
      if (e instanceof AuthError) logout("The proxy no longer accepts this token.");
    }
  }

  const HA_BADGES = { active: "up", standby: "amber", starting: "amber", fenced: "red", superseded: "red" };

  function renderHa(s) {
    const health = (s.health || {}).ha || {};
    const on = haOn(s);
    $("panel-ha").hidden = !on;
    const hb = $("ha-banner");
    const view = on ? state.ha || { role: health.role } : {};
    let cause = "", text = "";
    if (on && (view.role === "fenced" || health.state === "failed")) {
      cause = "fenced";
      text = "Fenced: " + (health.reason || "this instance could not renew its leadership in time") +
        ". It writes to no socket (OMS or venue); the standby takes over once the lease lapses.";
    } else if (on && view.role === "active" && (view.copy_state === "alone" || view.copy_state === "none")) {
      cause = "no-copy";
      text = "No standby has the copy: a failover now would start from an older state (copy state: " +
        view.copy_state + ").";
    }
    hb.textContent = text;
    hb.hidden = !text;
    hb.dataset.cause = cause;
    if (!on) return;
    const role = view.role || "";
    const badge = $("ha-role");
    badge.className = "badge " + (HA_BADGES[role] || "amber");
    badge.textContent = role;
    $("ha-me").textContent = view.instance ? `(this instance: ${view.instance}, pair ${view.pair})` : "";
    const p = view.partner || {};
    const whose = role === "standby" ? "active" : "standby";
    const lagMs = typeof p.lag_ms === "number" ? p.lag_ms.toFixed(1) : "";
    const left = typeof view.lease_left_ms === "number" ? Math.round(view.lease_left_ms) + " ms" : "";
    const inCopy = view.copy_state === "sync" || view.copy_state === "async";
    const row = el("tr", { "data-instance": view.instance || "" },
      el("td", { "data-partner": p.instance || "" }, p.instance || "none",
        el("span", { class: "muted small", text: " " + whose })),
      el("td", {}, p.instance ? el("span", { class: "badge " + (p.connected ? "up" : "down"), title: p.problem || null,
                                              text: p.connected ? "connected" : "not connected" }) : null,
        p.problem ? el("span", { class: "muted small", text: " " + p.problem }) : null),
      el("td", { text: view.copy || "" }),
      el("td", {}, el("span", { class: "badge " + (inCopy ? "up" : "amber"), "data-copy-state": view.copy_state || "",
                                text: (view.copy_state || "").replace(/_/g, " ") })),
      numCell(p.lag_bytes ?? ""), el("td", { class: "num", text: lagMs }),
      el("td", { class: "num", text: left }), numCell(String(view.token ?? "")),
      el("td", {}, el("span", { class: "badge " + (view.database === "lost" ? "down" : "up"),
                                text: view.database || "" })));
    table("ha-table", view, ["Partner", "Link", "Copy", "Copy state", "#Lag (bytes)", "#Lag (ms)", "#Lease left",
      "#Token", "Database"], [row], "");
  }

  function renderOrders(s) {
    const total = s.orders.open, first = (state.orderPages.length - 1) * ORDER_PAGE;
    $("orders-count").textContent = total > state.orders.length || first
      ? `(${total}; ${first + 1}–${first + state.orders.length} shown)` : `(${total})`;
    const pager = $("orders-pager");
    const more = first + state.orders.length < total, back = state.orderPages.length > 1;
    pager.hidden = !more && !back;
    $("orders-prev").disabled = !back;
    $("orders-next").disabled = !more;
    const rows = state.orders.map((o) => el("tr", { "data-order": `${o.session}|${o.cl_ord_id}` },
      el("td", {}, el("span", { class: "muted small", text: o.session + " " }), o.cl_ord_id), el("td", { text: o.account }),
      el("td", { text: o.symbol }), el("td", { text: o.side.replace(/_/g, " ") }),
      numCell(o.order_qty), o.price ? numCell(o.price) : el("td", { class: "num muted", text: o.ord_type }),
      numCell(o.leaves_qty), numCell(o.cum_qty),
      el("td", { text: o.status.replace("partially_filled", "partial").replace(/_/g, " ") +
                       (o.pending_replace ? " (" + o.pending_replace + ")" : "") })));
    table("orders", state.orders, ["Session ClOrdID", "Account", "Symbol", "Side", "#Qty", "#Price",
      "#Leaves", "#Filled", "Status"], rows, "no open orders");
  }

  function renderPositions(s) {
    const rows = s.positions.map((p) => el("tr", { "data-position": `${p.account}|${p.symbol}` },
      el("td", { text: p.account }), el("td", { text: p.symbol }), el("td", { class: "muted", text: p.sector }),
      numCell(p.qty), numCell(p.avg_cost), numCell(p.mark), numCell(p.market_value),
      numCell(p.unrealized_pnl), numCell(p.realized_pnl)));
    table("positions", s.positions, ["Account", "Symbol", "Sector", "#Qty", "#Avg cost", "#Mark", "#Value",
      "#Unrealized", "#Realized"], rows, "no positions");

    const bySymbol = new Map();
    for (const p of s.positions) {
      const t = bySymbol.get(p.symbol) || { qty: 0, value: 0, gross: 0 };
      t.qty += Number(p.qty); t.value += Number(p.market_value); t.gross += Math.abs(Number(p.market_value));
      bySymbol.set(p.symbol, t);
    }
    const symbolRows = [...bySymbol.entries()].sort((a, b) => b[1].gross - a[1].gross).map(([sym, t]) =>
      el("tr", {}, el("td", { text: sym }), numCell(String(t.qty)), numCell(String(t.value)), numCell(String(t.gross))));
    table("symbols", [...bySymbol.entries()], ["Symbol", "#Net qty", "#Net value", "#Gross"], symbolRows, "no positions");

    const firm = s.exposure.find((e) => e.scope === "firm");
    const gross = firm ? Number(firm.gross) : 0;
    const sectors = firm ? Object.entries(firm.sectors).sort((a, b) => Number(b[1]) - Number(a[1])) : [];
    const sectorRows = sectors.map(([name, value]) => el("tr", {},
      el("td", { text: name }), numCell(value),
      el("td", { class: "num", text: gross ? (Number(value) * 100 / gross).toFixed(1) + "%" : "" })));
    table("sectors", [sectors, gross], ["Sector", "#Gross", "#Share"], sectorRows, "no exposure");
  }

  function limitRows(s) {
    const out = [];
    const add = (layer, values) => {
      for (const [field, value] of Object.entries(values || {})) {
        if (field === "monitor") continue; // a mode, not a limit: the rule modes panel shows it
        out.push({ layer, field, value: Array.isArray(value) ? value.join(", ") : String(value), raw: value });
      }
    };
    add("firm", s.limits.firm);
    for (const [kind, key] of [["session", "sessions"], ["account", "accounts"], ["symbol", "symbols"]]) {
      for (const [name, values] of Object.entries(s.limits[key] || {})) add(`${kind}:${name}`, values);
    }
    return out;
  }

  function renderLimits(s) {
    const items = limitRows(s);
    const rows = items.map((l) => el("tr", { "data-limit": `${l.layer}|${l.field}` },
      el("td", { text: l.layer }), el("td", { text: l.field }),
      el("td", { class: "num", text: Array.isArray(l.raw) ? l.value : num(l.value) }),
      state.canAct ? el("td", {}, el("button", { type: "button", class: "act-edit-limit", "data-action": "edit-limit",
        onclick: () => editLimit(l.layer, l.field, l.value) }, "Edit")) : null));
    table("limits", [items, state.canAct], ["Layer", "Limit", "#Value", ...(state.canAct ? [""] : [])], rows, "no limits set");
  }

  // Each rule's mode, and the limits of a layer in monitor mode, with a toggle for the risk role.
  function renderModes() {
    const m = state.modes;
    if (!m) return;
    const rows = Object.entries(m.rules).map(([rule, mode]) => ({ what: rule, rule, layer: "", field: "", mode }));
    for (const l of m.limits) rows.push({ what: `${l.layer} ${l.field}`, rule: "", layer: l.layer, field: l.field, mode: l.mode });
    const other = (mode) => mode === "monitor" ? "enforce" : "monitor";
    const trs = rows.map((r) => el("tr", { "data-mode": r.rule ? "rule:" + r.rule : `${r.layer}|${r.field}` },
      el("td", { text: r.rule ? r.rule : r.what }),
      el("td", {}, el("span", { class: "badge " + (r.mode === "monitor" ? "monitor" : "accept"), text: r.mode })),
      state.canAct ? el("td", {}, el("button", { type: "button", class: "act-mode", "data-action": "set-mode",
        onclick: () => confirmMode(r, other(r.mode)) }, other(r.mode) === "monitor" ? "Monitor…" : "Enforce…")) : null));
    table("modes", [rows, state.canAct], ["Rule or limit", "Mode", ...(state.canAct ? [""] : [])], trs, "no rules run");
    const box = $("mode-buttons");
    if (state.rendered.modeButtons === state.canAct) return;
    state.rendered.modeButtons = state.canAct;
    box.replaceChildren(...(state.canAct ? [el("button", { type: "button", class: "act-mode", "data-action": "watch-limit",
      onclick: () => watchLimit() }, "Monitor a limit…")] : []));
  }

  function renderLimitButtons() {
    const box = $("limit-buttons");
    if (!state.canAct) { box.replaceChildren(); return; }
    box.replaceChildren(
      el("button", { type: "button", class: "act-edit-limit", "data-action": "new-limit", onclick: () => editLimit("firm", "", "") }, "Set a limit…"),
      el("button", { type: "button", class: "act-set-reference", "data-action": "set-reference", onclick: () => setReference() }, "Reference price…"));
  }

  function renderScopeList(s) {
    const scopes = new Set(["firm"]);
    for (const o of s.sessions.oms) scopes.add("session:" + o.name);
    for (const e of s.exposure) scopes.add(e.scope);
    for (const t of s.trading_states) scopes.add(t.scope);
    for (const p of s.positions) scopes.add("symbol:" + p.symbol);
    const sig = [...scopes].join(",");
    if (state.rendered.scopeList === sig) return;
    state.rendered.scopeList = sig;
    $("scope-list").replaceChildren(...[...scopes].map((x) => el("option", { value: x })));
  }

  function renderFeeds() {
    const onlyRejects = $("rejects-only").checked;
    const decisions = state.decisions.filter((d) => !onlyRejects || !d.accepted);
    const rows = decisions.map((d) => d.would_refuse ? wouldRefuseRow(d) : el("tr", { "data-decision": `${d.session}|${d.cl_ord_id}`, class: fresh(d) },
      el("td", { class: "nowrap", text: clock(d.now_ns) }), el("td", { text: d.session }),
      el("td", { text: d.msg_type }), el("td", { text: d.cl_ord_id }), el("td", { text: d.account }),
      el("td", { text: d.symbol }),
      el("td", {}, el("span", { class: "badge " + (d.accepted ? "accept" : "reject"), text: d.accepted ? "accepted" : d.code })),
      el("td", { class: "text", text: d.code && d.text.startsWith(d.code + ": ") ? d.text.slice(d.code.length + 2) : d.text })));
    table("decisions", [decisions.map((d) => itemKey("decision", d)), onlyRejects],
      ["Time", "Session", "Msg", "ClOrdID", "Account", "Symbol", "Result", "Reason"], rows, "no decisions yet");

    const alertRows = state.alerts.map((a) => a.detector ? anomalyRow(a) : el("tr", { class: fresh(a) },
      el("td", { class: "nowrap", text: clock(a.now_ns) }), el("td", { text: a.scope }),
      el("td", { text: UTIL_NAMES[a.limit_name] || a.limit_name }),
      el("td", {}, el("span", { class: "badge " + (levelClass(Number(a.level_pct)) || "amber"), text: a.level_pct + "%" })),
      el("td", { class: "text", title: a.text, text: a.text })));
    table("alerts", state.alerts.map((a) => itemKey("alert", a)), ["Time", "Scope", "Limit", "Level", "Text"], alertRows, "no alerts");

    const actRows = state.activity.map((a) => {
      if (a._kind === "notice") {
        return el("tr", { class: fresh(a) }, el("td", { class: "nowrap", text: clock(a.now_ns) }),
          el("td", { class: "muted", text: "notice" }), el("td", { text: a.kind }), el("td", { class: "text", title: a.detail, text: a.detail }));
      }
      const change = a.kind === "limit" || a.kind === "mode" ? `${a.detail}: ${a.before || "(unset)"} → ${a.after || "(unset)"}` : `${a.before || "—"} → ${a.after || "—"}`;
      const text = `${a.scope} ${change}` + (a.orders_cancelled ? `, ${a.orders_cancelled} cancelled` : "") +
        (a.ok ? "" : ` (refused: ${a.detail})`) + ` · ${a.operator}: ${a.reason}`;
      return el("tr", { class: fresh(a) }, el("td", { class: "nowrap", text: clock(a.now_ns) }),
        el("td", { class: "nowrap", text: a.operator }), el("td", { text: a.kind }), el("td", { class: "text", title: text, text }));
    });
    table("activity", state.activity.map((a) => itemKey(a._kind, a)), ["Time", "Who", "What", "Detail"], actRows, "nothing yet");
  }

  function fresh(item) {
    return item._fresh && Date.now() - item._fresh < 2000 ? "fresh" : "";
  }

  // ------------------------------------------------------------ the chart (inline SVG)

  const SVG = "http://www.w3.org/2000/svg";
  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function renderChart() {
    const points = state.history;
    const last = points[points.length - 1];
    $("chart-gross").textContent = last ? num(last.gross) : "";
    $("chart-net").textContent = last ? num(last.net) : "";
    // Drawn at the box's own size, so text is never stretched; redrawn when the window is resized.
    const W = Math.max(280, Math.round($("chart").clientWidth || 600)), H = 170, L = 48, R = 8, T = 8, B = 20;
    const sig = JSON.stringify([points.length, state.lastT, Math.floor(state.historyNow / 5e9), W]);
    if (state.rendered.chart === sig) return;
    state.rendered.chart = sig;

    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "firm gross and net exposure over time" });
    if (!points.length) {
      root.append(svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, "no data yet"));
      $("chart").replaceChildren(root);
      return;
    }
    const t0 = points[0].t_ns;
    const t1 = Math.max(state.historyNow, last.t_ns, t0 + 60e9);
    let lo = 0, hi = 0;
    for (const p of points) {
      lo = Math.min(lo, Number(p.net), Number(p.gross));
      hi = Math.max(hi, Number(p.net), Number(p.gross));
    }
    if (hi === lo) hi = lo + 1;
    const pad = (hi - lo) * 0.08;
    hi += pad; if (lo < 0) lo -= pad;
    const x = (t) => L + (W - L - R) * (t - t0) / (t1 - t0);
    const y = (v) => T + (H - T - B) * (hi - v) / (hi - lo);

    for (let i = 0; i <= 4; i++) {
      const v = lo + (hi - lo) * i / 4;
      root.append(svg("line", { class: "grid-line", x1: L, x2: W - R, y1: y(v), y2: y(v) }));
      root.append(svg("text", { x: L - 4, y: y(v) + 3, "text-anchor": "end" }, compact(v)));
    }
    if (lo < 0) root.append(svg("line", { class: "zero", x1: L, x2: W - R, y1: y(0), y2: y(0) }));
    root.append(svg("line", { class: "axis", x1: L, x2: L, y1: T, y2: H - B }));
    root.append(svg("line", { class: "axis", x1: L, x2: W - R, y1: H - B, y2: H - B }));
    root.append(svg("text", { x: L, y: H - 5, "text-anchor": "start" }, clock(t0)));
    root.append(svg("text", { x: (L + W - R) / 2, y: H - 5, "text-anchor": "middle" }, clock((t0 + t1) / 2)));
    root.append(svg("text", { x: W - R, y: H - 5, "text-anchor": "end" }, clock(t1)));

    // Step lines: a value holds until the next point, and the last one until now. Long histories are thinned.
    const step = Math.max(1, Math.ceil(points.length / 1500));
    for (const key of ["gross", "net"]) {
      let d = "";
      for (let i = 0; i < points.length; i += step) {
        const p = points[i];
        d += (d ? ` H${x(p.t_ns).toFixed(1)} V` : `M${x(p.t_ns).toFixed(1)},`) + y(Number(p[key])).toFixed(1);
      }
      d += ` V${y(Number(last[key])).toFixed(1)} H${x(t1).toFixed(1)}`;
      root.append(svg("path", { class: "line " + key, d }));
    }
    $("chart").replaceChildren(root);
  }

  // ------------------------------------------------------------ actions (risk and admin roles)

  // The one dialog: a title, a sentence, optional fields, a required reason, and a confirm button. A submit
  // that answers NEXT_STEP has opened another step in the same dialog instead of acting.
  const NEXT_STEP = Symbol("next step");
  function openDialog({ title, text, fields = [], confirm, danger = true, submit, reason = "" }) {
    const dialog = $("dialog");
    $("dialog-title").textContent = title;
    $("dialog-text").textContent = text || "";
    $("dialog-fields").replaceChildren(...fields);
    $("dialog-reason").value = reason;
    $("dialog-error").textContent = "";
    const button = $("dialog-confirm");
    button.textContent = confirm;
    button.className = danger ? "danger" : "primary";
    button.disabled = false;
    state.onSubmit = submit;
    if (!dialog.open) dialog.showModal(); // a second step (confirmClearLimit) reuses the open dialog
    (fields.length ? fields[0].querySelector("input,select") : $("dialog-reason")).focus();
  }

  async function submitDialog(event) {
    event.preventDefault();
    const missing = [...$("dialog-fields").querySelectorAll("[required]")].find((i) => !i.value.trim());
    if (missing) {
      $("dialog-error").textContent = `${missing.closest("label").firstChild.textContent} is required.`;
      missing.focus();
      return;
    }
    const reason = $("dialog-reason").value.trim();
    if (!reason) { $("dialog-error").textContent = "A reason is required."; $("dialog-reason").focus(); return; }
    const button = $("dialog-confirm");
    button.disabled = true;
    try {
      const result = await state.onSubmit(reason);
      if (result === NEXT_STEP) return;
      if (result && result.ok === false) throw new Error(result.error || result.detail || "refused");
      $("dialog").close();
      schedule(0);
    } catch (e) {
      if (e instanceof AuthError) { $("dialog").close(); logout("The proxy no longer accepts this token."); return; }
      $("dialog-error").textContent = e.message;
    } finally {
      button.disabled = false;
    }
  }

  function confirmKill(scope, action) {
    const spec = ACTIONS[action];
    openDialog({
      title: `${spec.verb} ${scope}?`,
      text: `${scope} is ${stateOf(scope)} now. ` + spec.text.replace("{scope}", scope),
      confirm: `${spec.verb} ${scope}`,
      danger: action !== "resume",
      submit: (reason) => post("/kill-switch", { scope, action, reason }),
    });
  }

  function field(label, input) {
    return el("label", {}, label, input);
  }

  function editLimit(layer, name, current) {
    const layerInput = el("input", { id: "limit-layer", value: layer, list: "scope-list", required: true,
                                     placeholder: "firm, session:oms1, account:ACC1 or symbol:AAPL" });
    const names = state.limitFields.length ? state.limitFields : (name ? [name] : []);
    const select = el("select", { id: "limit-field", required: true },
      names.map((n) => el("option", { value: n, selected: n === name }, n)));
    const valueInput = el("input", { id: "limit-value", value: current, placeholder: "empty clears the limit in this layer" });
    openDialog({
      title: name ? `Change ${name} of ${layer}` : "Set a limit",
      text: "Effective from the next order. A list (restricted_symbols) is comma separated.",
      fields: [field("Layer", layerInput), field("Limit", select), field("Value", valueInput)],
      confirm: "Apply limit",
      danger: false,
      submit: (reason) => {
        const f = select.value;
        const raw = valueInput.value.trim();
        const value = raw === "" ? null : f === "restricted_symbols" ? raw.split(/[\s,]+/).filter(Boolean) : raw;
        if (value === null) return confirmClearLimit(layerInput.value.trim(), f, reason);
        return post("/limits", { layer: layerInput.value.trim(), field: f, value, reason });
      },
    });
  }

  // Clearing a limit removes a protection, so it takes a second confirmation naming the layer and field.
  function confirmClearLimit(layer, name, reason) {
    const row = limitRows(state.summary || { limits: {} }).find((l) => l.layer === layer && l.field === name);
    openDialog({
      title: `Clear ${name} of ${layer}?`,
      text: `${layer} will no longer set ${name}` + (row ? ` (now ${row.value})` : "") +
        ", from the next order. Only a less specific layer's value, if one is set, can still apply.",
      confirm: `Clear ${name} of ${layer}`,
      danger: true,
      reason,
      submit: (r) => post("/limits", { layer, field: name, value: null, reason: r }),
    });
    return NEXT_STEP;
  }

  // Monitor mode lets through what the rule or limit would refuse (recorded as "would have refused");
  // enforce makes it refuse again. Either way a confirmation names what changes.
  function confirmMode(r, mode) {
    const what = r.rule ? `rule ${r.rule}` : `${r.field} of ${r.layer}`;
    openDialog({
      title: `${mode === "monitor" ? "Monitor" : "Enforce"} ${what}?`,
      text: mode === "monitor"
        ? `From the next order, ${what} no longer refuses: an order it would refuse goes on, and a "would have refused" decision is recorded.`
        : `From the next order, ${what} refuses orders again.`,
      confirm: `${mode === "monitor" ? "Monitor" : "Enforce"} ${what}`,
      danger: mode === "monitor",
      submit: (reason) => post("/modes", r.rule ? { rule: r.rule, mode, reason } : { layer: r.layer, field: r.field, mode, reason }),
    });
  }

  function watchLimit() {
    const layerInput = el("input", { id: "mode-layer", list: "scope-list", required: true,
                                     placeholder: "firm, session:oms1, account:ACC1 or symbol:AAPL" });
    const select = el("select", { id: "mode-field", required: true }, state.limitFields.filter((n) => n !== "sector_min_gross").map((n) => el("option", { value: n }, n)));
    openDialog({
      title: "Monitor a limit of one layer",
      text: "From the next order this layer's limit no longer refuses: a less specific layer's value of it still does, " +
        "and what this one would refuse is recorded as \"would have refused\".",
      fields: [field("Layer", layerInput), field("Limit", select)],
      confirm: "Monitor limit",
      submit: (reason) => post("/modes", { layer: layerInput.value.trim(), field: select.value, mode: "monitor", reason }),
    });
  }

  function setReference() {
    const symbol = el("input", { id: "ref-symbol", required: true, placeholder: "AAPL" });
    const price = el("input", { id: "ref-price", required: true, inputmode: "decimal", placeholder: "190.25" });
    const force = el("input", { id: "ref-force", type: "checkbox" });
    openDialog({
      title: "Set a reference price",
      text: "The price collar and notional rules use it from the next order.",
      fields: [field("Symbol", symbol), field("Price", price),
        field("Force a move beyond the allowed band", force)],
      confirm: "Set reference price",
      danger: false,
      submit: (reason) => post("/reference-prices",
        { symbol: symbol.value.trim(), price: price.value.trim(), reason, force: force.checked }),
    });
  }

  // ------------------------------------------------------------ start

  document.addEventListener("DOMContentLoaded", () => {
    $("login-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const token = $("token").value.trim();
      if (token) login(token);
    });
    $("logout").addEventListener("click", () => logout(""));
    $("orders-prev").addEventListener("click", () => pageOrders(-1));
    $("orders-next").addEventListener("click", () => pageOrders(1));
    $("dialog-form").addEventListener("submit", submitDialog);
    $("dialog-cancel").addEventListener("click", () => $("dialog").close());
    $("rejects-only").addEventListener("change", renderFeeds);
    let resizing = null;
    window.addEventListener("resize", () => { clearTimeout(resizing); resizing = setTimeout(renderChart, 150); });
    $("scope-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const scope = $("scope-input").value.trim();
      if (scope) confirmKill(scope, $("scope-action").value);
    });
    const saved = sessionStorage.getItem(TOKEN_KEY);
    if (saved) login(saved); else showLogin("");
  });
})();
