// durapod dashboard: one page, no dependencies. Every value from the server is shown with textContent.
"use strict";

const TOKEN_KEY = "durapod.token";
const REFRESH_MS = 2000;
const MAX_EVENTS_SHOWN = 300;
const $ = (id) => document.getElementById(id);

const state = {
  view: null, jobId: null, cursor: null, jobsTimer: null, stream: null, lastSeq: -1, job: null, streamStatus: null,
  tokenWaiters: [],
};

// -- the API, with the bearer token when the server asks for one ------------------------------------

function token() { return sessionStorage.getItem(TOKEN_KEY); }

function authHeaders() {
  const t = token();
  return t ? { Authorization: `Bearer ${t}` } : {};
}

function askToken(refused) {
  return new Promise((resolve) => {
    state.tokenWaiters.push(resolve);
    const dialog = $("token-dialog");
    $("token-error").hidden = !refused;
    if (!dialog.open) dialog.showModal();
    $("token-input").focus();
  });
}

$("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $("token-input").value.trim());
  $("token-dialog").close();
  const waiters = state.tokenWaiters.splice(0);
  waiters.forEach((resolve) => resolve());
});

async function api(path, options = {}) {
  for (;;) {
    const headers = { Accept: "application/json", ...authHeaders() };
    const init = { method: options.method || "GET", headers };
    if (options.body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(options.body);
    }
    const response = await fetch(path, init);
    if (response.status === 401) {
      await askToken(Boolean(token()));
      continue;
    }
    const data = await response.json().catch(() => ({}));
    if (!response.ok) {
      const error = new Error(data.error || `${response.status} ${response.statusText}`);
      error.status = response.status;
      throw error;
    }
    return data;
  }
}

// -- small helpers ------------------------------------------------------------------------------------

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("data-")) node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children) node.append(child);
  return node;
}

function badge(status) { return el("span", { class: `badge ${status}`, text: status }); }

function pretty(value) {
  if (value === null || value === undefined) return "—";
  return typeof value === "string" ? value : JSON.stringify(value, null, 2);
}

function short(value, length = 90) {
  const text = typeof value === "string" ? value : JSON.stringify(value);
  return text.length > length ? `${text.slice(0, length - 1)}…` : text;
}

function ago(iso) {
  if (!iso) return "—";
  const seconds = (Date.now() - Date.parse(iso)) / 1000;
  const future = seconds < 0;
  const s = Math.abs(seconds);
  const text = s < 60 ? `${Math.round(s)}s` : s < 3600 ? `${Math.round(s / 60)}m` : s < 86400
    ? `${Math.round(s / 3600)}h` : `${Math.round(s / 86400)}d`;
  return future ? `in ${text}` : `${text} ago`;
}

function localTime(iso) { return iso ? new Date(iso).toLocaleString() : "—"; }

function seconds(value) {
  if (value === null || value === undefined) return "?";
  return value < 1 ? `${Math.round(value * 1000)} ms` : `${value.toFixed(value < 10 ? 2 : 1)} s`;
}

function parseInput(text) {
  const trimmed = text.trim();
  if (!trimmed) return null;
  try { return JSON.parse(trimmed); } catch { return trimmed; }
}

// -- navigation (the hash: "", "#schedules", "#job/<id>") ---------------------------------------------

function route() {
  const hash = location.hash.replace(/^#/, "");
  stopStream();
  clearInterval(state.jobsTimer);
  for (const view of document.querySelectorAll(".view")) view.hidden = true;
  $("nav-jobs").classList.toggle("active", !hash.startsWith("schedules"));
  $("nav-schedules").classList.toggle("active", hash.startsWith("schedules"));
  if (hash.startsWith("job/")) showJob(decodeURIComponent(hash.slice(4)));
  else if (hash === "schedules") showSchedules();
  else showJobs();
}

document.addEventListener("click", (event) => {
  const link = event.target.closest("[data-nav]");
  if (!link) return;
  event.preventDefault();
  location.hash = link.dataset.nav === "jobs" ? "" : link.dataset.nav;
  if (link.dataset.nav === "jobs") route();  // an empty hash does not fire hashchange everywhere
});
window.addEventListener("hashchange", route);

// -- health ---------------------------------------------------------------------------------------------

async function refreshHealth() {
  const node = $("health");
  try {
    const health = await api("api/health");
    const busy = health.workers.length;
    const live = health.live_workers.length;
    node.className = "health ok";
    node.textContent = `${busy} of ${live} worker${live === 1 ? "" : "s"} busy`;
    node.title = "the store answers; workers running now, and those holding a job's lease";
  } catch (error) {
    node.className = "health bad";
    node.textContent = error.status === 503 ? "store unreachable" : "server unreachable";
  }
}

// -- jobs table -------------------------------------------------------------------------------------------

function jobsQuery(cursor) {
  const params = new URLSearchParams({ limit: "50" });
  const status = $("filter-status").value;
  const agent = $("filter-agent").value.trim();
  if (status) params.set("status", status);
  if (agent) params.set("agent", agent);
  for (const pair of $("filter-metadata").value.split(",")) {
    const [key, ...rest] = pair.split("=");
    if (key.trim() && rest.length) params.set(`metadata.${key.trim()}`, rest.join("=").trim());
  }
  if (cursor) params.set("cursor", cursor);
  return `api/jobs?${params}`;
}

function jobRow(job) {
  const outcome = job.error ? `${job.error_type || "Error"}: ${job.error}`
    : job.status === "paused" && job.waiting_for ? `waiting: ${job.waiting_for}`
    : job.result !== null ? short(job.result) : "";
  const row = el("tr", { "data-job": job.id },
    el("td", { class: "mono", text: job.id }),
    el("td", { class: "opt", text: job.agent || "any" }),
    el("td", {}, badge(job.status)),
    el("td", { class: "opt num", text: String(job.attempts) }),
    el("td", { class: "opt num", text: String(job.steps) }),
    el("td", { class: "opt", text: ago(job.updated_at), title: localTime(job.updated_at) }),
    el("td", { class: `wide${job.error ? " err" : ""}`, text: outcome, title: outcome }));
  row.addEventListener("click", () => { location.hash = `job/${encodeURIComponent(job.id)}`; });
  return row;
}

async function loadJobs(append = false) {
  try {
    const page = await api(jobsQuery(append ? state.cursor : null));
    const body = $("jobs-body");
    if (!append) body.replaceChildren();
    page.jobs.forEach((job) => body.append(jobRow(job)));
    state.cursor = page.cursor;
    $("jobs-more").hidden = !page.cursor;
    $("jobs-empty").hidden = body.children.length > 0;
    $("jobs-live").className = "live";
  } catch (error) {
    $("jobs-live").className = "live off";
    $("jobs-live").textContent = `● ${error.message}`;
  }
}

function showJobs() {
  state.view = "jobs";
  $("view-jobs").hidden = false;
  document.title = "durapod · jobs";
  loadJobs();
  // live: the first page again every few seconds (a shown "load more" page stays until filters change)
  state.jobsTimer = setInterval(() => {
    if ($("jobs-more").hidden || !state.cursor) loadJobs();
    refreshHealth();
  }, REFRESH_MS);
}

for (const id of ["filter-status", "filter-agent", "filter-metadata"]) {
  $(id).addEventListener("input", () => loadJobs());
}
$("filters").addEventListener("submit", (event) => { event.preventDefault(); loadJobs(); });
$("jobs-more").addEventListener("click", () => loadJobs(true));

// -- job page ---------------------------------------------------------------------------------------------

function renderJob(job) {
  state.job = job;
  $("job-id").textContent = job.id;
  const status = $("job-status");
  status.className = `badge ${job.status}`;
  status.textContent = job.status;
  const details = [
    ["agent", job.agent || "any worker"], ["attempts", `${job.attempts} (recoveries ${job.recoveries})`],
    ["steps", String(job.steps)], ["worker", job.owner || "—"], ["created", localTime(job.created_at)],
    ["updated", localTime(job.updated_at)], ["ended", localTime(job.completed_at)],
  ];
  if (job.next_attempt_at) details.push(["next attempt", localTime(job.next_attempt_at)]);
  if (Object.keys(job.metadata || {}).length) details.push(["metadata", JSON.stringify(job.metadata)]);
  if ((job.inputs || []).length) details.push(["resume inputs", JSON.stringify(job.inputs)]);
  if (job.usage && Object.keys(job.usage).length) {
    details.push(["usage", Object.entries(job.usage).map(([name, count]) => `${name} ${count}`).join(", ")]);
  }
  if (job.budget) details.push(["budget", JSON.stringify(job.budget)]);
  $("job-details").replaceChildren(...details.flatMap(([key, value]) => [el("dt", { text: key }), el("dd", { text: value })]));
  $("job-input").textContent = pretty(job.input);
  $("job-result").textContent = job.status === "completed" ? pretty(job.result) : "—";
  $("job-error-card").hidden = !job.error;
  $("job-error").textContent = job.error ? `${job.error_type || "Error"}: ${job.error}` : "";
  const waiting = $("job-waiting");
  waiting.hidden = !(job.status === "paused" && job.waiting_for);
  waiting.textContent = job.waiting_for ? `Waiting for an answer: ${job.waiting_for}` : "";
  $("btn-pause").disabled = !["pending", "running"].includes(job.status);
  $("btn-cancel").disabled = !["pending", "running", "paused"].includes(job.status);
  $("btn-resume").disabled = job.status !== "paused";
  $("resume-input").disabled = job.status !== "paused";
}

async function loadSteps(jobId) {
  const { steps } = await api(`api/jobs/${encodeURIComponent(jobId)}/steps`);
  if (jobId !== state.jobId) return;
  const longest = Math.max(0, ...steps.map((step) => step.duration || 0));
  $("job-steps").replaceChildren(...steps.map((step) => {
    const known = step.duration !== null && longest > 0;
    const bar = el("div", { class: `bar${step.duration === null ? " unknown" : ""}` });
    if (known) bar.style.width = `${Math.max(1, (100 * step.duration) / longest)}%`;
    return el("li", { title: `attempt ${step.attempt}, finished ${localTime(step.finished_at)}` },
      el("span", { class: "step-name", text: `${step.index}. ${step.name}` }),
      el("div", { class: "bar-track" }, bar),
      el("span", { class: "step-time", text: seconds(step.duration) }),
      el("span", { class: "step-preview", text: step.result_preview }));
  }));
  $("job-steps-empty").hidden = steps.length > 0;
}

function describe(event) {
  switch (event.type) {
    case "job_status": return event.job.status;
    case "token": return JSON.stringify(event.token);
    case "tool_call": return `${event.name}(${short(event.arguments, 60)})`;
    case "tool_result": return `${event.name} → ${short(event.result, 60)}`;
    case "step": return `#${event.index} ${event.name} → ${short(event.result, 60)}`;
    case "interrupt": return event.prompt;
    case "done": return short(event.content, 80);
    case "error": return `${event.error_type}: ${event.error}${event.will_retry ? " (will retry)" : ""}`;
    default: return "";
  }
}

function onEvent(event) {
  if (event.seq <= state.lastSeq) return;  // a reconnect never shows one twice
  state.lastSeq = event.seq;
  const list = $("job-events");
  list.append(el("li", {},
    el("span", { class: "seq", text: String(event.seq) }),
    el("span", { class: "type", text: event.type + (event.replayed ? " ↺" : "") }),
    el("span", { class: "what", text: describe(event) })));
  while (list.children.length > MAX_EVENTS_SHOWN) list.firstChild.remove();
  list.scrollTop = list.scrollHeight;
  if (event.type === "token" && !event.replayed) {
    const tokens = $("job-tokens");
    tokens.textContent += event.token;
    tokens.scrollTop = tokens.scrollHeight;
  } else if (event.type === "tool_call" || event.type === "tool_result") {
    $("job-tools").append(el("li", { text: `${event.type === "tool_call" ? "→" : "←"} ${describe(event)}` }));
  } else if (event.type === "job_status") {
    const tokens = $("job-tokens");
    if (event.job.status === "running" && tokens.textContent) {  // it runs again: a resume, a retry
      const resumed = state.streamStatus === "paused";
      tokens.textContent += resumed ? "\n— resumed —\n" : `\n— attempt ${event.job.attempts} —\n`;
    }
    state.streamStatus = event.job.status;
    renderJob(event.job);
    loadSteps(event.job_id).catch(() => {});
  } else if (event.type === "step") {
    loadSteps(event.job_id).catch(() => {});
  }
}

const EVENT_TYPES = ["job_status", "token", "tool_call", "tool_result", "step", "interrupt", "done", "error"];

function streamState(text) { $("job-stream").textContent = text; }

function onStreamEnd(name, data) {
  streamState(name === "shutdown" ? "server stopped" : `stream ended (${data.reason})`);
  stopStream();
  if (name !== "shutdown") refreshJob();
}

// EventSource cannot send an Authorization header: with a token, the stream is read with fetch.
function startStream(jobId) {
  stopStream();
  const url = `api/jobs/${encodeURIComponent(jobId)}/events`;
  if (!token()) {
    const source = new EventSource(`${url}?after=${state.lastSeq}`);
    state.stream = { close: () => source.close() };
    source.onopen = () => streamState("live");
    source.onerror = () => streamState("reconnecting…");
    for (const type of EVENT_TYPES) source.addEventListener(type, (message) => onEvent(JSON.parse(message.data)));
    for (const type of ["end", "shutdown"]) {
      source.addEventListener(type, (message) => onStreamEnd(type, JSON.parse(message.data)));
    }
    return;
  }
  const controller = new AbortController();
  state.stream = { close: () => controller.abort() };
  fetchStream(url, controller).catch(() => {});
}

async function fetchStream(url, controller) {
  while (!controller.signal.aborted) {
    try {
      const headers = { Accept: "text/event-stream", ...authHeaders(), "Last-Event-ID": String(state.lastSeq) };
      const response = await fetch(url, { headers, signal: controller.signal });
      if (response.status === 401) { await askToken(true); continue; }
      if (!response.ok) { streamState(`stream refused (${response.status})`); return; }
      streamState("live");
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          const fields = { event: "message", data: [] };
          for (const line of block.split("\n")) {
            if (line.startsWith(":")) continue;
            const colon = line.indexOf(":");
            const name = colon < 0 ? line : line.slice(0, colon);
            const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
            if (name === "data") fields.data.push(text); else fields[name] = text;
          }
          if (!fields.data.length) continue;
          const data = JSON.parse(fields.data.join("\n"));
          if (fields.event === "end" || fields.event === "shutdown") { onStreamEnd(fields.event, data); return; }
          onEvent(data);
        }
      }
    } catch (error) {
      if (controller.signal.aborted) return;
    }
    streamState("reconnecting…");
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
}

function stopStream() {
  if (state.stream) state.stream.close();
  state.stream = null;
}

async function refreshJob() {
  if (!state.jobId) return;
  try {
    renderJob(await api(`api/jobs/${encodeURIComponent(state.jobId)}`));
    await loadSteps(state.jobId);
  } catch (error) {
    showMessage(error.message);
  }
}

function showMessage(text) {
  const node = $("job-message");
  node.hidden = !text;
  node.textContent = text || "";
}

async function showJob(jobId) {
  state.view = "job";
  state.jobId = jobId;
  state.lastSeq = -1;
  state.streamStatus = null;
  $("view-job").hidden = false;
  document.title = `durapod · ${jobId}`;
  $("job-id").textContent = jobId;
  for (const id of ["job-tokens"]) $(id).textContent = "";
  for (const id of ["job-tools", "job-events", "job-steps"]) $(id).replaceChildren();
  showMessage("");
  try {
    renderJob(await api(`api/jobs/${encodeURIComponent(jobId)}`));
  } catch (error) {
    showMessage(error.status === 404 ? `No job ${jobId}.` : error.message);
    return;
  }
  loadSteps(jobId).catch(() => {});
  startStream(jobId);
}

async function control(action, body = {}) {
  showMessage("");
  try {
    const job = await api(`api/jobs/${encodeURIComponent(state.jobId)}/${action}`, { method: "POST", body });
    renderJob(job);
    if (!state.stream && !["completed", "failed", "cancelled"].includes(job.status)) startStream(state.jobId);
  } catch (error) {
    showMessage(error.message);
  }
}

$("btn-pause").addEventListener("click", () => control("pause"));
$("btn-cancel").addEventListener("click", () => control("cancel"));
$("resume-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = parseInput($("resume-input").value);
  $("resume-input").value = "";
  control("resume", input === null ? {} : { input });
});

// -- schedules --------------------------------------------------------------------------------------------

async function showSchedules() {
  state.view = "schedules";
  $("view-schedules").hidden = false;
  document.title = "durapod · schedules";
  const { schedules } = await api("api/schedules");
  $("schedules-body").replaceChildren(...schedules.map((item) => el("tr", {},
    el("td", { text: item.agent }),
    el("td", { text: item.name }),
    el("td", { class: "mono", text: `${item.cron} (${item.timezone})` }),
    el("td", { text: item.paused ? "paused" : `${localTime(item.next_fire)} (${ago(item.next_fire)})` }),
    el("td", { class: "opt", text: localTime(item.last_fire) }),
    el("td", { class: "opt mono", text: item.last_job_id || "—" }),
    el("td", { class: "opt", text: item.last_error ? `error: ${item.last_error}` : item.paused ? "paused" : "active" }))));
  $("schedules-empty").hidden = schedules.length > 0;
}

route();
refreshHealth();
setInterval(refreshHealth, 10000);
