/* gdaemon dashboard: JSON-RPC over the daemon's websocket at /rpc.
 *
 * On every (re)connection: system.auth (when a token is stored in this tab's
 * sessionStorage), events.subscribe ["worker.*", "daemon.*", "log.*"], then
 * daemon.status, worker.info and daemon.logtail.  Pushed worker.* events
 * update the table at once, log.record events the log pane; a poll every two
 * seconds refreshes what events do not carry (loops, memory, CPU, uptime,
 * connections), feeds the charts (requests/s read from GET /metrics, restarts
 * and worker memory from worker.info) and keeps the connection from being
 * closed as idle.  Everything is drawn with text nodes and SVG elements: no
 * innerHTML, no library, no build step.
 *
 * Actions are enabled only where they make sense: nothing while disconnected,
 * pause for a running worker, resume for a paused one, restart unless the
 * worker is stopping or stopped.
 *
 * Test hooks: body[data-ready] is "true" once subscribed and rendered,
 * body[data-connected] follows the websocket; tr[data-worker=NAME] has
 * data-status (the shown status name) and data-history (the status names
 * shown so far, oldest first); each .chart has data-samples; #log li has
 * data-level.
 */
"use strict";

(function () {
  const POLL_MS = 2000;
  const MAX_EVENTS = 200;
  const MAX_HISTORY = 30;
  const MAX_BACKOFF_MS = 10000;
  const MAX_LOG_LINES = 500;
  const LOG_TAIL = 200;
  const CHART_SAMPLES = 150;      // five minutes of two-second polls
  const RUNNING = new Set(["SPINUP", "LOOPING"]);
  const ENDING = new Set(["SPINDOWN", "STOPPED"]);
  const TOKEN_KEY = "gdaemon.token";
  const $ = (id) => document.getElementById(id);

  const st = {
    ws: null,
    nextId: 1,
    pending: new Map(),
    backoff: 500,
    retryTimer: null,
    pollTimer: null,
    refreshTimer: null,
    opened: false,
    failures: 0,
    needAuth: false,
    token: sessionStorage.getItem(TOKEN_KEY),
    status: null,
    statusAt: 0,
    eventSeq: 0,
    lastEvent: new Map(),   // worker name -> eventSeq of its last event
    methods: [],
    selected: null,
    signature: null,
    series: { rps: [], restarts: [], memory: [] },
    lastRequests: null,     // [total RPC requests, time in ms] of the previous /metrics read
    metricsOk: true,
    pools: {},              // pool name -> instance names (worker.pools)
    scaling: false,
  };

  class RpcError extends Error {
    constructor(error) {
      super(error.message);
      this.code = error.code;
      this.data = error.data;
    }
  }

  // -- connection ---------------------------------------------------------------

  function wsUrl() {
    return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/rpc";
  }

  function setConn(state, text) {
    const conn = $("conn");
    conn.dataset.state = state;
    $("conn-text").textContent = text;
    const connected = state === "open";
    if (document.body.dataset.connected !== String(connected)) {
      document.body.dataset.connected = String(connected);
      updateActions();
    }
  }

  function isConnected() {
    return document.body.dataset.connected === "true";
  }

  // Which buttons make sense now: per worker status, and never while disconnected.
  function updateActions() {
    const connected = isConnected();
    $("pause-all").disabled = !connected;
    $("resume-all").disabled = !connected;
    $("scale").disabled = !connected || !$("scale-pool").value || st.scaling;
    $("call").disabled = !connected || !st.selected;
    for (const row of $("workers").tBodies[0].rows) updateRowActions(row, connected);
  }

  function updateRowActions(row, connected) {
    if (connected === undefined) connected = isConnected();
    const status = row.dataset.status || "";
    for (const button of row.querySelectorAll("button[data-action]")) {
      if (button.dataset.busy === "true") {
        button.disabled = true;
        continue;
      }
      const action = button.dataset.action;
      let allowed = connected;
      if (action === "pause") allowed = allowed && RUNNING.has(status);
      else if (action === "resume") allowed = allowed && status === "PAUSED";
      else if (action === "restart") allowed = allowed && !ENDING.has(status);
      button.disabled = !allowed;
    }
  }

  function connect() {
    clearTimeout(st.retryTimer);
    setConn("connecting", "connecting…");
    let ws;
    try {
      ws = new WebSocket(wsUrl());
    } catch (err) {
      scheduleReconnect();
      return;
    }
    st.ws = ws;
    ws.onopen = () => onOpen(ws);
    ws.onmessage = (ev) => { if (ws === st.ws) onMessage(ev.data); };
    ws.onclose = () => onClose(ws);
  }

  function reconnectNow() {
    const old = st.ws;
    st.ws = null;
    if (old) {
      old.onclose = null;
      old.close();
      failPending("reconnecting");
    }
    st.backoff = 500;
    connect();
  }

  async function onOpen(ws) {
    st.opened = true;
    st.failures = 0;
    st.backoff = 500;
    $("hint").hidden = true;
    setConn("open", "live");
    try {
      if (st.token) await call("system.auth", [st.token]);
      await call("events.subscribe", [["worker.*", "daemon.*", "log.*"]]);
      await refresh();
      await loadLog();
      await loadMethods();
      if (ws !== st.ws) return;
      document.body.dataset.ready = "true";
      startPolling();
    } catch (err) {
      if (ws === st.ws) handleError(err);
    }
  }

  function onClose(ws) {
    if (ws !== st.ws) return;
    st.ws = null;
    document.body.dataset.ready = "false";
    stopPolling();
    failPending("connection closed");
    if (st.needAuth) {
      setConn("closed", "authentication required — click to sign in");
      return;
    }
    scheduleReconnect();
  }

  function scheduleReconnect() {
    st.failures += 1;
    const delay = st.backoff;
    st.backoff = Math.min(st.backoff * 2, MAX_BACKOFF_MS);
    setConn("closed", "disconnected — retrying in " + Math.max(1, Math.round(delay / 1000)) + "s");
    if (!st.opened && st.failures >= 3) {
      const hint = $("hint");
      hint.textContent = "Cannot open " + wsUrl() + ". Is the daemon running? If it is, this page's origin ("
        + location.origin + ") may not be in its websocketorigins setting.";
      hint.hidden = false;
    }
    st.retryTimer = setTimeout(connect, delay);
  }

  function failPending(why) {
    for (const entry of st.pending.values()) entry.reject(new RpcError({ code: 0, message: why }));
    st.pending.clear();
  }

  // -- JSON-RPC -----------------------------------------------------------------

  function call(method, params) {
    return new Promise((resolve, reject) => {
      const ws = st.ws;
      if (!ws || ws.readyState !== WebSocket.OPEN) {
        reject(new RpcError({ code: 0, message: "not connected" }));
        return;
      }
      const id = st.nextId++;
      const request = { jsonrpc: "2.0", method: method, id: id };
      if (params !== undefined) request.params = params;
      st.pending.set(id, { resolve: resolve, reject: reject });
      ws.send(JSON.stringify(request));
    });
  }

  function onMessage(text) {
    let message;
    try {
      message = JSON.parse(text);
    } catch (err) {
      console.warn("undecodable message", text);
      return;
    }
    for (const msg of Array.isArray(message) ? message : [message]) {
      if (msg.method === "event" && msg.params) {
        onEvent(msg.params);
        continue;
      }
      const entry = st.pending.get(msg.id);
      if (entry) {
        st.pending.delete(msg.id);
        if (msg.error) entry.reject(new RpcError(msg.error));
        else entry.resolve(msg.result);
      } else if (msg.error) {
        handleError(new RpcError(msg.error));
      }
    }
  }

  function handleError(err) {
    if (err.code === -32001) {
      askToken(Boolean(st.token));
      return;
    }
    if (err.code !== 0) toast("Error " + err.code + ": " + err.message);
  }

  // -- authentication -----------------------------------------------------------

  function askToken(invalid) {
    st.needAuth = true;
    if (invalid) {
      st.token = null;
      sessionStorage.removeItem(TOKEN_KEY);
    }
    $("auth-error").hidden = !invalid;
    const dialog = $("auth");
    if (!dialog.open) dialog.showModal();
    $("token").focus();
  }

  $("auth-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const token = $("token").value;
    if (!token) return;
    st.token = token;
    sessionStorage.setItem(TOKEN_KEY, token);
    st.needAuth = false;
    $("token").value = "";
    $("auth").close();
    reconnectNow();
  });

  $("conn").addEventListener("click", () => { if (st.needAuth) askToken(false); });

  // -- daemon status ------------------------------------------------------------

  function renderStatus(status) {
    st.status = status;
    st.statusAt = Date.now();
    $("description").textContent = status.description;
    document.title = status.description + " — gdaemon";
    $("sockethandler").textContent = status.sockethandler + "  ·  " + location.host;
    $("pid").textContent = status.pid;
    $("version").textContent = status.version;
    $("connections").textContent = status.connections;
    $("worker-count").textContent = Object.keys(status.workers || {}).length;
    tickUptime();
  }

  function tickUptime() {
    if (!st.status) return;
    const seconds = st.status.uptime + (st.ws ? (Date.now() - st.statusAt) / 1000 : 0);
    $("uptime").textContent = formatDuration(seconds);
  }

  function formatDuration(seconds) {
    seconds = Math.max(0, Math.floor(seconds));
    const d = Math.floor(seconds / 86400), h = Math.floor(seconds / 3600) % 24;
    const m = Math.floor(seconds / 60) % 60, s = seconds % 60;
    if (d) return d + "d " + h + "h " + m + "m";
    if (h) return h + "h " + m + "m " + s + "s";
    if (m) return m + "m " + s + "s";
    return s + "s";
  }

  // -- workers ------------------------------------------------------------------

  async function refresh() {
    const seq = st.eventSeq;
    const [status, infos, pools] = await Promise.all(
      [call("daemon.status"), call("worker.info"), call("worker.pools")]);
    const list = Array.isArray(infos) ? infos : [infos];
    renderStatus(status);
    renderWorkers(list, seq);
    renderPools(pools);
    sample(list);
  }

  function refreshSoon() {
    clearTimeout(st.refreshTimer);
    st.refreshTimer = setTimeout(() => { refresh().catch(handleError); }, 150);
  }

  function startPolling() {
    stopPolling();
    st.pollTimer = setInterval(() => { refresh().catch(handleError); }, POLL_MS);
  }

  function stopPolling() {
    clearInterval(st.pollTimer);
    clearTimeout(st.refreshTimer);
    st.pollTimer = null;
  }

  function rowOf(name) {
    return $("workers").querySelector('tbody tr[data-worker="' + CSS.escape(name) + '"]');
  }

  function renderWorkers(infos, seq) {
    const tbody = $("workers").tBodies[0];
    const seen = new Set();
    for (const info of infos) {
      seen.add(info.name);
      let row = rowOf(info.name);
      if (!row) {
        row = makeRow(info.name);
        tbody.appendChild(row);
      }
      row.querySelector(".kind").textContent = info.kind;
      row.querySelector(".loops").textContent = info.loops;
      row.querySelector(".restarts").textContent = info.restarts;
      row.querySelector(".rss").textContent = formatBytes(info.rss);
      row.querySelector(".cpu").textContent = info.cpu == null ? "–" : Number(info.cpu).toFixed(2) + " s";
      // A poll older than the worker's last pushed event must not undo it.
      if ((st.lastEvent.get(info.name) || 0) <= seq) {
        setPid(row, info.pid);
        setStatus(row, info.status, info.status_name);
      }
    }
    for (const row of Array.from(tbody.rows)) {
      if (!seen.has(row.dataset.worker)) row.remove();
    }
    $("no-workers").hidden = infos.length > 0;
  }

  function makeRow(name) {
    const row = document.createElement("tr");
    row.dataset.worker = name;
    row.dataset.history = "";
    const cells = [["name", name], ["kind", ""], ["pid num", "–"], ["state", ""],
                   ["loops num", "0"], ["restarts num", "0"], ["rss num", "–"], ["cpu num", "–"],
                   ["actions", ""]];
    for (const [cls, text] of cells) {
      const td = document.createElement("td");
      td.className = cls;
      td.textContent = text;
      row.appendChild(td);
    }
    const badge = document.createElement("span");
    badge.className = "badge status";
    row.querySelector(".state").appendChild(badge);
    const actions = row.querySelector(".actions");
    for (const [action, label] of [["pause", "Pause"], ["resume", "Resume"], ["restart", "Restart"]]) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "btn small";
      button.dataset.action = action;
      button.textContent = label;
      button.addEventListener("click", () => workerAction(name, action, button));
      actions.appendChild(button);
    }
    return row;
  }

  function setPid(row, pid) {
    row.querySelector(".pid").textContent = pid == null ? "–" : pid;
  }

  function setStatus(row, code, name) {
    // The daemon names every state it sends (status_name, from its
    // WorkerStatus enum): no copy of that table here.
    name = name || String(code);
    if (row.dataset.status === name) return;
    row.dataset.status = name;
    const history = row.dataset.history ? row.dataset.history.split(" ") : [];
    history.push(name);
    row.dataset.history = history.slice(-MAX_HISTORY).join(" ");
    const badge = row.querySelector(".status");
    badge.textContent = name;
    badge.dataset.status = name;
    updateRowActions(row);
    row.classList.remove("flash");
    void row.offsetWidth;  // restart the animation
    row.classList.add("flash");
  }

  async function workerAction(name, action, button) {
    const label = button.textContent;
    button.dataset.busy = "true";
    button.disabled = true;
    if (action === "restart") button.textContent = "Restarting…";
    try {
      await call("worker." + action, [name]);
    } catch (err) {
      handleError(err);
    } finally {
      button.textContent = label;
      delete button.dataset.busy;
      const row = rowOf(name);
      if (row) updateRowActions(row);
    }
  }

  // -- pools: worker.scale -------------------------------------------------------

  function renderPools(pools) {
    const select = $("scale-pool");
    const chosen = select.value;
    const names = Object.keys(pools || {});
    if (select.dataset.names !== names.join(" ")) {
      select.textContent = "";
      for (const name of names) {
        const option = document.createElement("option");
        option.value = name;
        option.textContent = name;
        select.appendChild(option);
      }
      select.dataset.names = names.join(" ");
      if (names.includes(chosen)) select.value = chosen;
    }
    st.pools = pools || {};
    if (!st.scaling && document.activeElement !== $("scale-count") && select.value in st.pools) {
      $("scale-count").value = st.pools[select.value].length;
    }
    updateActions();
  }

  async function scalePool() {
    const pool = $("scale-pool").value;
    const count = parseInt($("scale-count").value, 10);
    if (!pool || !(count >= 0)) return;
    const button = $("scale");
    st.scaling = true;
    button.textContent = "Scaling…";
    updateActions();
    try {
      const names = await call("worker.scale", [pool, count]);
      toast(pool + ": " + names.length + " instance" + (names.length === 1 ? "" : "s"));
    } catch (err) {
      handleError(err);
    } finally {
      st.scaling = false;
      button.textContent = "Scale";
      refreshSoon();
      updateActions();
    }
  }

  $("scale").addEventListener("click", scalePool);
  $("scale-pool").addEventListener("change", () => {
    const pool = $("scale-pool").value;
    if (st.pools && pool in st.pools) $("scale-count").value = st.pools[pool].length;
    updateActions();
  });

  $("pause-all").addEventListener("click", () => call("worker.pause").catch(handleError));
  $("resume-all").addEventListener("click", () => call("worker.resume").catch(handleError));

  // -- events -------------------------------------------------------------------

  function onEvent(event) {
    const data = event.data || {};
    if (event.name === "log.record") {
      appendLog(data);
      return;
    }
    st.eventSeq += 1;
    logEvent(event);
    if (event.name.startsWith("worker.") && typeof data.name === "string") {
      st.lastEvent.set(data.name, st.eventSeq);
      const row = rowOf(data.name);
      if (!row) {
        refreshSoon();
        return;
      }
      if (event.name === "worker.state") {
        setStatus(row, data.status, data.status_name);
      } else if (event.name === "worker.spawned" || event.name === "worker.respawned") {
        setPid(row, data.pid);
        refreshSoon();
      } else if (event.name === "worker.exited") {
        setPid(row, null);
        refreshSoon();
      }
    } else if (event.name === "daemon.stop") {
      setConn("closed", "daemon stopping");
    } else if (event.name === "daemon.reload") {
      refreshSoon();
    }
  }

  function logEvent(event) {
    const list = $("events");
    const item = document.createElement("li");
    item.dataset.event = event.name;
    const time = document.createElement("span");
    time.className = "time";
    time.textContent = formatTime(event.time);
    const name = document.createElement("span");
    name.className = "ev-name";
    name.textContent = event.name;
    const data = document.createElement("span");
    data.className = "data";
    data.textContent = JSON.stringify(event.data || {});
    data.title = data.textContent;
    item.append(time, name, data);
    list.prepend(item);
    while (list.children.length > MAX_EVENTS) list.lastElementChild.remove();
  }

  function formatTime(epoch) {
    const date = epoch ? new Date(epoch * 1000) : new Date();
    const pad = (n, w) => String(n).padStart(w || 2, "0");
    return pad(date.getHours()) + ":" + pad(date.getMinutes()) + ":" + pad(date.getSeconds())
      + "." + pad(date.getMilliseconds(), 3);
  }

  $("clear-events").addEventListener("click", () => { $("events").textContent = ""; });

  // -- log pane -----------------------------------------------------------------

  async function loadLog() {
    const lines = await call("daemon.logtail", [LOG_TAIL]);
    const list = $("log");
    list.textContent = "";
    for (const line of lines) appendLog({ line: line, level: levelOf(line) });
  }

  function levelOf(line) {
    const match = / (DEBUG|INFO|WARNING|ERROR|CRITICAL) /.exec(line);
    return match ? match[1] : "INFO";
  }

  function appendLog(data) {
    const list = $("log");
    const item = document.createElement("li");
    item.dataset.level = data.level || "INFO";
    item.textContent = data.line != null ? data.line
      : formatTime(data.time) + " " + data.level + " " + data.logger + "[" + data.pid + "]: " + data.message;
    const atBottom = list.scrollTop + list.clientHeight >= list.scrollHeight - 4;
    list.appendChild(item);
    while (list.children.length > MAX_LOG_LINES) list.firstElementChild.remove();
    if ($("log-follow").checked && atBottom) list.scrollTop = list.scrollHeight;
  }

  $("clear-log").addEventListener("click", () => { $("log").textContent = ""; });
  $("log-follow").addEventListener("change", () => {
    if ($("log-follow").checked) $("log").scrollTop = $("log").scrollHeight;
  });

  // -- charts -------------------------------------------------------------------

  function formatBytes(bytes) {
    if (bytes == null || isNaN(bytes)) return "–";
    const units = ["B", "KB", "MB", "GB"];
    let value = Number(bytes), unit = 0;
    while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
    return (unit ? value.toFixed(1) : String(value)) + " " + units[unit];
  }

  async function requestsTotal() {
    // The RPC request counters of GET /metrics (Prometheus text format).
    const headers = st.token ? { Authorization: "Bearer " + st.token } : {};
    const response = await fetch("/metrics", { headers: headers, cache: "no-store" });
    if (!response.ok) throw new Error("GET /metrics: " + response.status);
    let total = 0;
    for (const line of (await response.text()).split("\n")) {
      if (line.startsWith("gdaemon_rpc_requests_total")) total += Number(line.slice(line.lastIndexOf(" ") + 1)) || 0;
    }
    return total;
  }

  async function sample(infos) {
    let restarts = 0;
    const memory = new Map();   // pid -> rss: greenlet workers share the daemon's
    for (const info of infos) {
      restarts += Number(info.restarts) || 0;
      if (info.rss != null && info.pid != null) memory.set(info.pid, Number(info.rss));
    }
    let rss = null;
    if (memory.size) rss = Array.from(memory.values()).reduce((a, b) => a + b, 0);
    push("restarts", restarts, String(restarts));
    push("memory", rss, formatBytes(rss));
    if (!st.metricsOk) return;
    try {
      const total = await requestsTotal();
      const now = Date.now();
      const last = st.lastRequests;
      st.lastRequests = [total, now];
      if (last && now > last[1]) {
        const rate = Math.max(0, (total - last[0]) / ((now - last[1]) / 1000));
        push("rps", rate, rate.toFixed(1));
      }
    } catch (err) {
      st.metricsOk = false;   // no /metrics here (or not allowed): leave the chart empty
      const chart = $("chart-rps");
      chart.querySelector('[data-role="value"]').textContent = "n/a";
      chart.title = String(err.message || err);
    }
  }

  function push(name, value, label) {
    const series = st.series[name];
    series.push(value);
    while (series.length > CHART_SAMPLES) series.shift();
    const chart = $("chart-" + name);
    chart.dataset.samples = String(series.length);
    chart.querySelector('[data-role="value"]').textContent = value == null ? "–" : label;
    draw(chart, series);
  }

  function draw(chart, series) {
    const width = 300, height = 60, pad = 2;
    const values = series.map((v) => (v == null ? 0 : v));
    const max = Math.max(1e-9, ...values);
    const step = width / Math.max(1, CHART_SAMPLES - 1);
    const offset = width - step * (values.length - 1);
    const points = values.map((v, i) => {
      const x = offset + i * step;
      const y = height - pad - (v / max) * (height - 2 * pad);
      return x.toFixed(1) + "," + y.toFixed(1);
    });
    chart.querySelector(".line").setAttribute("points", points.join(" "));
    const area = points.length
      ? [offset.toFixed(1) + "," + height].concat(points, [width + "," + height]) : [];
    chart.querySelector(".area").setAttribute("points", area.join(" "));
  }

  // -- method console -----------------------------------------------------------

  async function loadMethods() {
    st.methods = await call("system.listMethods");
    renderMethods();
    if (!st.selected && st.methods.length) selectMethod(st.methods.includes("daemon.status") ? "daemon.status" : st.methods[0]);
  }

  function renderMethods() {
    const filter = $("method-filter").value.trim().toLowerCase();
    const list = $("methods");
    list.textContent = "";
    for (const name of st.methods) {
      if (filter && !name.toLowerCase().includes(filter)) continue;
      const item = document.createElement("li");
      item.textContent = name;
      item.dataset.method = name;
      item.tabIndex = 0;
      item.setAttribute("role", "option");
      item.setAttribute("aria-selected", String(name === st.selected));
      item.addEventListener("click", () => selectMethod(name));
      item.addEventListener("keydown", (ev) => {
        if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); selectMethod(name); }
        if (ev.key === "ArrowDown" && item.nextElementSibling) item.nextElementSibling.focus();
        if (ev.key === "ArrowUp" && item.previousElementSibling) item.previousElementSibling.focus();
      });
      list.appendChild(item);
    }
  }

  $("method-filter").addEventListener("input", renderMethods);

  async function selectMethod(name) {
    const changed = st.selected !== name;
    st.selected = name;
    for (const item of $("methods").children) item.setAttribute("aria-selected", String(item.dataset.method === name));
    $("method-name").textContent = name;
    $("call").disabled = !isConnected();
    if (changed) {
      $("method-help").textContent = "";
      $("method-signature").textContent = "";
    }
    try {
      const [help, signature] = await Promise.all([call("system.methodHelp", [name]),
                                                   call("system.methodSignature", [name])]);
      if (st.selected !== name) return;
      $("method-help").textContent = formatHelp(help) || "(no description)";
      const types = (signature && signature[0]) || [];
      $("method-signature").textContent = "(" + types.slice(1).join(", ") + ") → " + (types[0] || "any");
      if (changed) $("params").value = paramsTemplate(types.slice(1));
    } catch (err) {
      handleError(err);
    }
  }

  function formatHelp(text) {
    // Docstrings: drop their indentation, join wrapped lines, keep paragraphs.
    return String(text || "").split("\n").map((line) => line.trim()).join("\n")
      .replace(/([^\n])\n(?=[^\n])/g, "$1 ").trim();
  }

  function paramsTemplate(types) {
    const samples = { string: '""', int: "0", double: "0.0", boolean: "false", array: "[]", struct: "{}", nil: "null" };
    return "[" + types.map((t) => samples[t] || "null").join(", ") + "]";
  }

  async function runCall() {
    const name = st.selected;
    if (!name) return;
    const out = $("call-result");
    let params;
    const text = $("params").value.trim();
    try {
      params = text ? JSON.parse(text) : undefined;
    } catch (err) {
      out.dataset.state = "error";
      out.textContent = "params are not valid JSON: " + err.message;
      return;
    }
    if (params !== undefined && (params === null || typeof params !== "object")) {
      out.dataset.state = "error";
      out.textContent = "params must be a JSON array or object";
      return;
    }
    const started = performance.now();
    out.dataset.state = "pending";
    out.textContent = "…";
    try {
      const result = await call(name, params);
      out.dataset.state = "ok";
      out.textContent = JSON.stringify(result, null, 2);
    } catch (err) {
      out.dataset.state = "error";
      out.textContent = "error " + err.code + ": " + err.message
        + (err.data !== undefined ? "\n" + JSON.stringify(err.data, null, 2) : "");
      if (err.code === -32001) handleError(err);
    }
    $("call-time").textContent = (performance.now() - started).toFixed(1) + " ms";
  }

  $("call").addEventListener("click", runCall);
  $("params").addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); runCall(); }
  });

  // -- misc ---------------------------------------------------------------------

  let toastTimer = null;
  function toast(text) {
    const box = $("toast");
    box.textContent = text;
    box.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { box.hidden = true; }, 6000);
  }

  setInterval(tickUptime, 1000);
  updateActions();
  connect();
})();
