// Shared by the dashboard's modules: state, DOM and HTTP helpers, formatting.

export const KEY_STORE = "wakeline.apiKey";
export const TERMINAL = new Set(["completed", "failed", "cancelled"]);
export const ROLES = { viewer: 1, operator: 2, approver: 3 };
export const END_TYPES = {
  RunCompleted: "completed", RunFailed: "failed", RunCancelled: "cancelled",
};

export const state = {
  key: localStorage.getItem(KEY_STORE) || "",
  me: null,
  timers: [],
  source: null,
  runsLimit: 50,
  run: null, // the open run: {id, row, sseStatus, lastSeq, open: Set, payloads: Map}
};

export const $ = (sel) => document.querySelector(sel);

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value == null || value === false) continue;
    if (name === "class") el.className = value;
    else if (name === "dataset") Object.assign(el.dataset, value);
    else if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else el.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child != null) el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

export async function api(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (state.key) headers.Authorization = `Bearer ${state.key}`;
  const res = await fetch(path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = res.status === 204 ? null : await res.json().catch(() => ({}));
  if (!res.ok) {
    const error = new Error((data && data.detail) || `${res.status} ${res.statusText}`);
    error.status = res.status;
    throw error;
  }
  return data;
}

export const runPath = (id) => `v1/runs/${encodeURIComponent(id)}`;

export function money(text) {
  if (text == null) return "–";
  const value = Number(text);
  if (value === 0) return "$0";
  return value >= 0.01 ? `$${value.toFixed(4)}` : `$${value.toPrecision(3)}`;
}

export function duration(ms) {
  if (ms == null || Number.isNaN(ms)) return "–";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.floor(ms / 60000)} m ${Math.round((ms % 60000) / 1000)} s`;
}

export function when(ms) {
  if (ms == null) return "–";
  const date = new Date(ms);
  const today = new Date().toDateString() === date.toDateString();
  return today ? date.toLocaleTimeString() : date.toLocaleString();
}

export const tokens = (t) => (t ? `${t.input} / ${t.output}` : "–");

export function pretty(text) {
  if (text == null) return "–";
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return String(text);
  }
}

export const statusBadge = (status) => h("span", { class: `status s-${status}` }, status);
// an open run no live worker hosts the agent version of (RunRow.orphaned)
export const orphanBadge = (run) => (run.orphaned
  ? h("span", { class: "status s-orphaned", title: "no live worker hosts this version" },
    "orphaned")
  : null);
export const agentName = (run) => (run.version ? `${run.agent}@${run.version}` : run.agent);
export const canOperate = () => state.me && ROLES[state.me.role] >= ROLES.operator;
export const canApprove = () => state.me && ROLES[state.me.role] >= ROLES.approver;

export function banner(message) {
  const el = $("#banner");
  el.textContent = message || "";
  el.hidden = !message;
}

export function every(ms, fn) {
  state.timers.push(setInterval(() => fn().catch(report), ms));
}

export function report(error) {
  banner(error.status === 401 ? "Enter a valid API key (top right)." : error.message);
}

export function showView(name) {
  for (const view of document.querySelectorAll(".view")) view.hidden = view.id !== `view-${name}`;
  for (const link of document.querySelectorAll("[data-nav]")) {
    link.classList.toggle("active", link.dataset.nav === name);
  }
}
