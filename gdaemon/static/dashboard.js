/* gdaemon dashboard: JSON-RPC over the daemon's websocket at /rpc.
 *
 * On every (re)connection: system.auth (when a token is stored in this tab's
 * sessionStorage), events.subscribe ["worker.*", "daemon.*"], then daemon.status
 * and worker.info.  Pushed worker.* events update the table at once; a poll
 * every two seconds refreshes what events do not carry (loops, uptime,
 * connections) and keeps the connection from being closed as idle.
 *
 * Test hooks: body[data-ready] is "true" once subscribed and rendered;
 * tr[data-worker=NAME] has data-status (the shown status name) and
 * data-history (the status names shown so far, oldest first).
 */
"use strict";

(function () {
  const STATUS_NAMES = ["SPINUP", "LOOPING", "PAUSED", "SPINDOWN", "RESTARTING", "STOPPED"];
  const POLL_MS = 2000;
  const MAX_EVENTS = 200;
  const MAX_HISTORY = 30;
  const MAX_BACKOFF_MS = 10000;
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
      await call("events.subscribe", [["worker.*", "daemon.*"]]);
      await refresh();
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
    const [status, infos] = await Promise.all([call("daemon.status"), call("worker.info")]);
    renderStatus(status);
    renderWorkers(Array.isArray(infos) ? infos : [infos], seq);
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
                   ["loops num", "0"], ["restarts num", "0"], ["actions", ""]];
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
    name = name || STATUS_NAMES[code] || String(code);
    if (row.dataset.status === name) return;
    row.dataset.status = name;
    const history = row.dataset.history ? row.dataset.history.split(" ") : [];
    history.push(name);
    row.dataset.history = history.slice(-MAX_HISTORY).join(" ");
    const badge = row.querySelector(".status");
    badge.textContent = name;
    badge.dataset.status = name;
    row.querySelector('[data-action="pause"]').disabled = name === "PAUSED";
    row.querySelector('[data-action="resume"]').disabled = name !== "PAUSED";
    row.classList.remove("flash");
    void row.offsetWidth;  // restart the animation
    row.classList.add("flash");
  }

  async function workerAction(name, action, button) {
    const label = button.textContent;
    button.disabled = true;
    if (action === "restart") button.textContent = "Restarting…";
    try {
      await call("worker." + action, [name]);
    } catch (err) {
      handleError(err);
    } finally {
      button.textContent = label;
      const row = rowOf(name);
      const status = row ? row.dataset.status : "";
      button.disabled = (action === "pause" && status === "PAUSED") || (action === "resume" && status !== "PAUSED");
    }
  }

  $("pause-all").addEventListener("click", () => call("worker.pause").catch(handleError));
  $("resume-all").addEventListener("click", () => call("worker.resume").catch(handleError));

  // -- events -------------------------------------------------------------------

  function onEvent(event) {
    const data = event.data || {};
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
    $("call").disabled = false;
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
  connect();
})();
