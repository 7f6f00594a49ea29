// wakeline dashboard: runs, a run's timeline (live over SSE), two runs side by side and
// costs.  No build step.
//
// Auth: the API key lives in localStorage; fetch sends it as a bearer header, EventSource
// (which cannot send headers) as ?key=.

import {
  $,
  KEY_STORE,
  TERMINAL,
  api,
  banner,
  canOperate,
  duration,
  every,
  h,
  money,
  report,
  showView,
  state,
  orphanBadge,
  agentName,
  statusBadge,
  tokens,
  when,
} from "./lib.js";
import { setupDiffView, showDiff } from "./diff.js";
import { setupRunView, showRun } from "./run.js";

// ---------------------------------------------------------------- key

async function loadMe() {
  state.me = null;
  $("#who").textContent = "no key";
  if (!state.key) {
    banner("Enter an API key (top right) to see runs.");
    return;
  }
  try {
    state.me = await api("v1/me");
    $("#who").textContent = `${state.me.name} · ${state.me.role}`;
    banner("");
  } catch (error) {
    report(error);
  }
}

function setupKeyForm() {
  $("#key-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const key = $("#key-input").value.trim();
    if (!key) return;
    state.key = key;
    localStorage.setItem(KEY_STORE, key);
    $("#key-input").value = "";
    await loadMe();
    route();
  });
  $("#key-clear").addEventListener("click", async () => {
    state.key = "";
    localStorage.removeItem(KEY_STORE);
    await loadMe();
    route();
  });
}

// ---------------------------------------------------------------- router

function stopViewWork() {
  state.timers.forEach(clearInterval);
  state.timers = [];
  if (state.source) state.source.close();
  state.source = null;
  state.run = null;
}

function route() {
  stopViewWork();
  const hash = location.hash.replace(/^#\/?/, "");
  const [page, ...rest] = hash.split("/");
  if (page === "runs" && rest.length) return showRun(decodeURIComponent(rest.join("/")));
  if (page === "diff" && rest.length === 2) {
    return showDiff(decodeURIComponent(rest[0]), decodeURIComponent(rest[1]));
  }
  if (page === "costs") return showCosts();
  return showRuns();
}

// ---------------------------------------------------------------- runs list

async function showRuns() {
  showView("runs");
  $("#new-run").hidden = !canOperate();
  if (canOperate()) loadAgents().catch(report);
  if (!state.key) return;
  await refreshRuns().catch(report);
  every(2000, refreshRuns);
}

async function refreshRuns() {
  const query = new URLSearchParams({ limit: String(state.runsLimit) });
  const status = $("#filter-status").value;
  if (status === "orphaned") query.set("orphaned", "true");
  else if (status) query.set("status", status);
  if ($("#filter-agent").value.trim()) query.set("agent", $("#filter-agent").value.trim());
  const page = await api(`v1/runs?${query}`);
  $("#runs-body").replaceChildren(...page.runs.map(runRow));
  if (!page.runs.length) {
    $("#runs-body").append(h("tr", {}, h("td", { colspan: 9, class: "muted" }, "No runs yet.")));
  }
  $("#runs-more").hidden = !page.next_cursor || state.runsLimit >= 500;
  $("#runs-updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
}

function runRow(run) {
  const ended = run.ended_ms ?? (TERMINAL.has(run.status) ? run.updated_ms : Date.now());
  return h("tr", { dataset: { runId: run.run_id }, class: "run-row" },
    h("td", {}, h("a", { href: `#/runs/${encodeURIComponent(run.run_id)}`, class: "mono" },
      run.run_id)),
    h("td", {}, agentName(run) || "–"),
    h("td", {}, run.tenant || "–"),
    h("td", { class: "status-cell" }, statusBadge(run.status), orphanBadge(run)),
    h("td", {}, when(run.started_ms)),
    h("td", { class: "num" }, duration(run.started_ms == null ? null : ended - run.started_ms)),
    h("td", { class: "num" }, `${run.model_calls} / ${run.tool_calls}`),
    h("td", { class: "num" }, tokens(run.tokens)),
    h("td", { class: "num" }, money(run.cost_usd)));
}

async function loadAgents() {
  const { agents, validated } = await api("v1/agents");
  const select = $("#start-agent");
  const known = validated && agents.length > 0;
  select.hidden = !known;
  $("#start-agent-text").hidden = known;
  if (known && select.options.length !== agents.length) {
    select.replaceChildren(...agents.map((a) => h("option", { value: a.name }, a.name)));
  }
}

function setupRunsView() {
  $("#filter-status").addEventListener("change", () => refreshRuns().catch(report));
  $("#filter-agent").addEventListener("input", () => refreshRuns().catch(report));
  $("#runs-more").addEventListener("click", () => {
    state.runsLimit = Math.min(state.runsLimit + 50, 500);
    refreshRuns().catch(report);
  });
  $("#start-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const out = $("#start-result");
    const agent = $("#start-agent").hidden ? $("#start-agent-text").value.trim()
      : $("#start-agent").value;
    let input;
    try {
      input = JSON.parse($("#start-input").value || "null");
    } catch (error) {
      out.textContent = `input is not JSON: ${error.message}`;
      return;
    }
    try {
      const body = { agent, input, tenant: $("#start-tenant").value.trim() };
      const started = await api("v1/runs", { method: "POST", body });
      out.replaceChildren("started ", h("a", { href: `#/runs/${encodeURIComponent(started.run_id)}`,
        class: "mono", id: "started-link" }, started.run_id));
      await refreshRuns();
    } catch (error) {
      out.textContent = error.message;
    }
  });
}

// ---------------------------------------------------------------- costs

async function showCosts() {
  showView("costs");
  if (!state.key) return;
  await refreshCosts().catch(report);
  every(5000, refreshCosts);
}

async function refreshCosts() {
  const [costs, byDay, shared] = await Promise.all([
    api("v1/costs"), api("v1/costs/day"), api("v1/budgets"),
  ]);
  const t = costs.total;
  const card = (label, value) => h("div", { class: "card stat" },
    h("div", { class: "muted" }, label), h("div", { class: "big" }, value));
  $("#costs-total").replaceChildren(
    card("Total cost", money(t.cost_usd)), card("Runs", t.runs), card("Model calls", t.model_calls),
    card("Tokens in", t.tokens.input), card("Tokens out", t.tokens.output),
    card("Unpriced calls", t.unpriced_calls));
  costTable("#costs-agent", "Agent", costs.by_agent);
  costTable("#costs-tenant", "Tenant", costs.by_tenant);
  costTable("#costs-model", "Model", costs.by_model);
  dayTable(byDay.rows.slice().reverse());
  budgetTable(shared.budgets);
  $("#costs-updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
}

function costTable(sel, label, lines) {
  const head = h("thead", {}, h("tr", {}, h("th", {}, label), h("th", { class: "num" }, "Runs"),
    h("th", { class: "num" }, "Calls"), h("th", { class: "num" }, "Tokens in / out"),
    h("th", { class: "num" }, "Cost")));
  const body = h("tbody", {}, lines.length ? lines.map((line) => h("tr", {},
    h("td", { class: "mono" }, line.key || "(none)"), h("td", { class: "num" }, line.runs),
    h("td", { class: "num" }, line.model_calls), h("td", { class: "num" }, tokens(line.tokens)),
    h("td", { class: "num" }, money(line.cost_usd))))
    : h("tr", {}, h("td", { colspan: 5, class: "muted" }, "Nothing yet.")));
  $(sel).replaceChildren(head, body);
}

function dayTable(rows) {
  const head = h("thead", {}, h("tr", {}, h("th", {}, "Day"), h("th", { class: "num" }, "Calls"),
    h("th", { class: "num" }, "Tokens in / out"), h("th", { class: "num" }, "Cost")));
  const body = h("tbody", {}, rows.length ? rows.map((row) => h("tr", { dataset: { day: row.day } },
    h("td", { class: "mono" }, row.day), h("td", { class: "num" }, row.model_calls),
    h("td", { class: "num" }, tokens(row.tokens)), h("td", { class: "num" }, money(row.cost_usd))))
    : h("tr", {}, h("td", { colspan: 4, class: "muted" }, "Nothing yet.")));
  $("#costs-day").replaceChildren(head, body);
}

function budgetTable(budgets) {
  const head = h("thead", {}, h("tr", {}, h("th", {}, "Budget"), h("th", { class: "num" }, "Limit"),
    h("th", { class: "num" }, "Spent"), h("th", { class: "num" }, "Reserved"),
    h("th", { class: "num" }, "In flight")));
  const body = h("tbody", {}, budgets.length ? budgets.map((b) => h("tr",
    { dataset: { budget: b.key } }, h("td", { class: "mono" }, b.key),
    h("td", { class: "num" }, b.limit == null ? "none" : money(b.limit)),
    h("td", { class: "num" }, money(b.spent)), h("td", { class: "num" }, money(b.reserved)),
    h("td", { class: "num" }, b.in_flight)))
    : h("tr", {}, h("td", { colspan: 5, class: "muted" }, "No shared budgets yet.")));
  $("#budgets").replaceChildren(head, body);
}

// ---------------------------------------------------------------- start

async function main() {
  setupKeyForm();
  setupRunsView();
  setupRunView();
  setupDiffView();
  window.addEventListener("hashchange", route);
  await loadMe();
  route();
}

main();
