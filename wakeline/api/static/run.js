// One run: summary, pending gates, the timeline (payloads on demand), live over SSE.

import {
  $,
  END_TYPES,
  TERMINAL,
  api,
  banner,
  canApprove,
  canOperate,
  duration,
  every,
  h,
  money,
  pretty,
  report,
  runPath,
  showView,
  state,
  statusBadge,
  orphanBadge,
  agentName,
  tokens,
  when,
} from "./lib.js";
import { diffHash } from "./diff.js";

export async function showRun(id) {
  showView("run");
  state.run = {
    id, row: null, sseStatus: null, lastSeq: -1, open: new Set(), payloads: new Map(),
    streams: new Map(), calls: new Map(),
  };
  $("#run-title").textContent = id;
  $("#run-status").replaceChildren(); // not the previous run's status while this one loads
  $("#run-streams-body").replaceChildren();
  $("#run-streams").hidden = true;
  $("#events-list").replaceChildren();
  $("#events-count").textContent = "0";
  $("#steps-body").replaceChildren();
  $("#run-live").hidden = true;
  $("#run-origin").hidden = true;
  $("#fork-options").hidden = !canOperate();
  if (!state.key) return;
  const run = state.run;
  if (!(await firstLoad(run))) return; // navigated away meanwhile, or a real error
  if (state.run !== run) return;
  showOrigin(run).catch(report);
  if (!TERMINAL.has(run.row.status)) openStream(id);
  every(3000, async () => {
    if (state.run && !TERMINAL.has(effectiveStatus())) await refreshRun();
  });
}

// A run opened just after its start may not be in the views yet (404): wait for it to appear,
// saying so, instead of showing "unknown run" for good.
async function firstLoad(run) {
  for (let wait = 200; ; wait = Math.min(wait * 2, 2000)) {
    try {
      await refreshRun();
      banner("");
      return true;
    } catch (error) {
      if (state.run !== run) return false;
      if (error.status !== 404) {
        report(error);
        return false;
      }
      banner(`Run ${run.id} is not known yet: waiting for it to appear…`);
      await new Promise((resolve) => setTimeout(resolve, wait));
      if (state.run !== run) return false;
    }
  }
}

function effectiveStatus() {
  const { row, sseStatus } = state.run;
  if (sseStatus && TERMINAL.has(sseStatus) && !TERMINAL.has(row.status)) return sseStatus;
  return row.status;
}

let refreshPending = null;
function scheduleRefresh() {
  if (refreshPending) return;
  refreshPending = setTimeout(async () => {
    refreshPending = null;
    if (!state.run) return;
    await refreshRun().catch(report);
    // the views fold the log a moment after the events stream shows it: catch up
    if (state.run && state.run.row.last_seq < state.run.lastSeq) scheduleRefresh();
  }, 250);
}

async function refreshRun() {
  const run = state.run;
  const [row, steps] = await Promise.all([api(runPath(run.id)), allSteps(run.id)]);
  if (state.run !== run) return;
  run.row = row;
  run.lastSteps = steps;
  renderRunSummary(row);
  renderGates(row);
  renderSteps(row, steps);
}

// The run's steps, page after page (the API sends at most 1,000 at a time).
async function allSteps(id) {
  const steps = [];
  let cursor = null;
  do {
    const query = `payloads=false&limit=1000${cursor ? `&cursor=${cursor}` : ""}`;
    const page = await api(`${runPath(id)}/steps?${query}`);
    steps.push(...page.steps);
    cursor = page.next_cursor;
  } while (cursor);
  return steps;
}

function renderRunSummary(row) {
  const status = effectiveStatus();
  $("#run-status").replaceChildren(...[statusBadge(status), orphanBadge(row)].filter(Boolean));
  const end = row.ended_ms ?? (TERMINAL.has(status) ? row.updated_ms : Date.now());
  const items = [
    ["Agent", agentName(row) || "–"], ["Tenant", row.tenant || "–"],
    ["Started", when(row.started_ms)],
    ["Duration", duration(row.started_ms == null ? null : end - row.started_ms)],
    ["Model calls", row.model_calls], ["Tool calls", row.tool_calls], ["Steps", row.steps],
    ["Tokens in / out", tokens(row.tokens) + (row.estimated_calls ? " (estimated)" : "")],
    ["Cost", row.unpriced_calls && row.unpriced_calls >= row.model_calls ? "unpriced"
      : money(row.cost_usd)],
  ];
  if (row.unpriced_calls) items.push(["Unpriced calls", row.unpriced_calls]);
  if (row.cancelled_by) items.push(["Cancelled by", row.cancelled_by]);
  $("#run-summary").replaceChildren(
    ...items.map(([k, v]) => h("div", {}, h("dt", {}, k), h("dd", {}, v))));
  const problem = row.error ? `${row.error.type}: ${row.error.message}`
    : row.drift ? `drifted at seq ${row.drift.seq}: ${row.drift.message}`
      : row.rejection ? `rejected: ${row.rejection.reason}` : "";
  $("#run-error").textContent = problem;
  $("#run-error").hidden = !problem;
  $("#run-input").textContent = pretty(row.input);
  $("#run-output").textContent = pretty(row.output);
  const open = !TERMINAL.has(status);
  $("#run-cancel").hidden = !(canOperate() && open);
  $("#run-resume").hidden = !(canOperate() && open && status !== "running");
}

// Pending gates: the approver's part of the page.  `row.pending_gates` lists the open gates
// and the calls a policy suspended; approve/reject POST to .../gates/{gate}/{action}.
function renderGates(row) {
  const gates = Array.isArray(row.pending_gates) ? row.pending_gates : [];
  $("#run-gates").hidden = gates.length === 0;
  $("#run-gates-body").replaceChildren(...gates.map((gate) => gateCard(row.run_id, gate)));
}

function gateCard(runId, gate) {
  const reason = h("input", { class: "gate-reason", placeholder: "reason (optional)" });
  const act = (action) => async (event) => {
    event.target.disabled = true;
    const path = `${runPath(runId)}/gates/${encodeURIComponent(gate.gate)}/${action}`;
    await api(path, { method: "POST", body: { reason: reason.value } }).catch(report);
    scheduleRefresh();
  };
  const what = gate.kind === "policy"
    ? `policy ${gate.gate} stopped ${gate.target || "a call"}: ${gate.reason || ""}`
    : `approval ${gate.gate}`;
  const actions = canApprove()
    ? [reason,
      h("button", { class: "gate-approve", onclick: act("approve") }, "Approve"),
      h("button", { class: "gate-reject danger", onclick: act("reject") }, "Reject")]
    : [h("span", { class: "muted" }, "an approver key can decide")];
  return h("div", { class: "gate", dataset: { gate: gate.gate, seq: gate.seq } },
    h("div", { class: "gate-what" }, h("strong", {}, what),
      h("span", { class: "muted" }, ` · step ${gate.seq} · waiting since ${when(gate.requested_ms)}`),
      gate.payload == null ? null : h("pre", {}, pretty(gate.payload))),
    h("div", { class: "gate-actions" }, ...actions));
}

// Streaming model calls: their text as it arrives (`delta` messages), until their result.
function addDelta(delta) {
  const streams = state.run.streams;
  let stream = streams.get(delta.seq);
  if (!stream) {
    const model = state.run.calls.get(delta.seq) || "model";
    const text = h("pre", { class: "stream-text" });
    const node = h("div", { class: "stream", dataset: { seq: delta.seq } },
      h("div", { class: "muted" }, `step ${delta.seq} · ${model} · streaming…`), text);
    stream = { node, text, value: delta.index > 0 ? "…" : "" };
    streams.set(delta.seq, stream);
    $("#run-streams-body").append(node);
  }
  if (delta.index === 0) stream.value = ""; // (re)started, e.g. by a resumed worker
  stream.value += delta.text;
  stream.text.textContent = stream.value;
  $("#run-streams").hidden = false;
}

function endStream(seq) {
  const stream = state.run.streams.get(seq);
  if (!stream) return;
  stream.node.remove();
  state.run.streams.delete(seq);
  $("#run-streams").hidden = state.run.streams.size === 0;
}

function renderSteps(row, steps) {
  const start = row.started_ms ?? (steps[0] && steps[0].requested_ms) ?? Date.now();
  const endAll = Math.max(row.ended_ms ?? Date.now(), ...steps.map((s) => s.completed_ms ?? 0));
  const span = Math.max(endAll - start, 1);
  const rows = [];
  for (const step of steps) {
    rows.push(stepRow(step, start, span));
    if (state.run.open.has(step.seq)) rows.push(payloadRow(step));
  }
  if (!rows.length) rows.push(h("tr", {}, h("td", { colspan: 9, class: "muted" }, "No steps yet.")));
  $("#steps-body").replaceChildren(...rows);
}

function stepRow(step, start, span) {
  const from = (step.requested_ms ?? start) - start;
  const to = (step.completed_ms ?? Date.now()) - start;
  const bar = h("div", { class: `bar k-${step.kind}` });
  bar.style.left = `${(100 * from) / span}%`;
  bar.style.width = `${Math.max((100 * (to - from)) / span, 0.6)}%`;
  const latency = step.latency_us == null ? null : step.latency_us / 1000;
  const toggle = () => {
    const open = state.run.open;
    if (open.has(step.seq)) open.delete(step.seq);
    else open.add(step.seq);
    renderSteps(state.run.row, state.run.lastSteps);
  };
  return h("tr", { class: "step", dataset: { seq: step.seq, kind: step.kind } },
    h("td", { class: "num" }, step.seq),
    h("td", {}, h("span", { class: `kind k-${step.kind}` }, step.kind)),
    h("td", { class: "mono" }, step.name || "–"),
    h("td", {}, statusBadge(step.status)),
    h("td", { class: "bar-col" }, h("div", { class: "track" }, bar)),
    h("td", { class: "num" }, duration(latency)),
    h("td", { class: "num" }, tokens(step.usage)),
    h("td", { class: "num" }, step.kind === "model" ? money(step.cost_usd) : ""),
    h("td", {}, h("button", { class: "link payload-toggle", onclick: toggle },
      state.run.open.has(step.seq) ? "hide" : "payload"), forkButton(step)));
}

// A fork's page says where it comes from and links to the diff with its source.
async function showOrigin(run) {
  const { fork } = await api(`${runPath(run.id)}/fork`);
  if (state.run !== run || !fork) return;
  const edits = [fork.model && `model ${fork.model}`, fork.prompt && "a new system prompt",
    fork.tools === "recorded" && "recorded tool results"].filter(Boolean);
  $("#run-origin").replaceChildren("forked from ",
    h("a", { href: `#/runs/${encodeURIComponent(fork.source)}`, class: "mono" }, fork.source),
    ` at seq ${fork.seq}`, edits.length ? ` with ${edits.join(", ")}` : "", " · ",
    h("a", { href: diffHash(fork.source, run.id), id: "run-compare" }, "compare with source"));
  $("#run-origin").hidden = false;
}

// Fork: a new run that reuses this run's journal before the step and runs live from it, with
// the fork options' model and system prompt if given (operator; POST .../fork, then the new
// run's page).
function forkButton(step) {
  if (!canOperate() || (step.kind !== "model" && step.kind !== "tool")) return null;
  const fork = async (event) => {
    event.target.disabled = true;
    const body = { at: step.seq };
    const model = $("#fork-model").value.trim();
    const prompt = $("#fork-prompt").value;
    if (model) body.model = model;
    if (prompt.trim()) body.prompt = prompt;
    try {
      const made = await api(`${runPath(state.run.id)}/fork`, { method: "POST", body });
      location.hash = `#/runs/${encodeURIComponent(made.run_id)}`;
    } catch (error) {
      report(error);
      event.target.disabled = false;
    }
  };
  return h("button", { class: "link step-fork", title: "fork the run from this step", onclick: fork }, "fork");
}

function payloadRow(step) {
  const cell = h("td", { colspan: 9 }, h("span", { class: "muted" }, "loading…"));
  const cached = state.run.payloads.get(step.seq);
  if (cached) fillPayload(cell, cached);
  else {
    const run = state.run;
    api(`${runPath(run.id)}/steps/${step.seq}`).then((full) => {
      if (full.status !== "open") run.payloads.set(step.seq, full);
      fillPayload(cell, full);
    }).catch((error) => cell.replaceChildren(error.message));
  }
  return h("tr", { class: "payload" }, cell);
}

function fillPayload(cell, step) {
  const parts = [
    h("div", {}, h("h3", {}, "Request"), h("pre", {}, pretty(step.request))),
    h("div", {}, h("h3", {}, "Response"), h("pre", {}, pretty(step.response))),
  ];
  if (step.error) parts.push(h("div", {}, h("h3", {}, "Error"), h("pre", {}, pretty(JSON.stringify(step.error)))));
  cell.replaceChildren(h("div", { class: "io" }, parts));
}

function openStream(id) {
  const url = `${runPath(id)}/events?key=${encodeURIComponent(state.key)}`;
  const source = new EventSource(url);
  state.source = source;
  $("#run-live").hidden = false;
  const finish = () => {
    source.close();
    $("#run-live").hidden = true;
    if (state.run && state.run.id === id) {
      for (const seq of [...state.run.streams.keys()]) endStream(seq);
    }
  };
  source.onmessage = (message) => {
    const event = JSON.parse(message.data);
    if (!state.run || state.run.id !== id) return;
    state.run.lastSeq = Math.max(state.run.lastSeq, event.seq);
    if (END_TYPES[event.type]) state.run.sseStatus = END_TYPES[event.type];
    if (event.type === "ModelCallRequested") state.run.calls.set(event.seq, event.payload.model);
    if (event.payload && typeof event.payload.step === "number") endStream(event.payload.step);
    addEvent(`#${event.seq} ${event.type}`, event.time_ms);
    if (state.run.row) renderRunSummary(state.run.row);
    scheduleRefresh();
  };
  source.addEventListener("delta", (message) => {
    if (state.run && state.run.id === id) addDelta(JSON.parse(message.data));
  });
  source.addEventListener("notice", (message) => {
    const notice = JSON.parse(message.data);
    addEvent(`notice ${notice.type}`, notice.time_ms);
    scheduleRefresh();
  });
  source.addEventListener("end", (message) => {
    const end = JSON.parse(message.data);
    if (state.run && state.run.id === id) state.run.sseStatus = end.status;
    finish();
    scheduleRefresh();
  });
  source.addEventListener("stream-error", (message) => {
    banner(`event stream: ${JSON.parse(message.data).detail}`);
    finish();
  });
  source.onerror = () => {
    if (source.readyState === EventSource.CLOSED) finish();
  };
}

function addEvent(text, timeMs) {
  const list = $("#events-list");
  list.append(h("li", {}, h("span", { class: "muted mono" },
    new Date(timeMs).toLocaleTimeString()), " ", text));
  $("#events-count").textContent = String(list.children.length);
}

export function setupRunView() {
  $("#run-cancel").addEventListener("click", async () => {
    if (!state.run || !confirm(`Cancel run ${state.run.id}?`)) return;
    await api(`${runPath(state.run.id)}/cancel`, { method: "POST", body: {} }).catch(report);
    scheduleRefresh();
  });
  $("#run-resume").addEventListener("click", async () => {
    if (!state.run) return;
    await api(`${runPath(state.run.id)}/resume`, { method: "POST" }).catch(report);
    scheduleRefresh();
  });
}
