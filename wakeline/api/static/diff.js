// Two runs side by side (GET v1/diff): their steps paired in the order they opened, the
// first divergence highlighted, and in each pair the prompt, system prompt, output, tokens
// and cost that differ marked.  Every text goes in as text (h()), never as HTML.

import { $, api, banner, duration, h, money, report, showView, state, tokens } from "./lib.js";

export const diffHash = (a, b) => `#/diff/${encodeURIComponent(a)}/${encodeURIComponent(b)}`;

export async function showDiff(a, b) {
  showView("diff");
  const runLink = (id) => h("a", { href: `#/runs/${encodeURIComponent(id)}`, class: "mono" }, id);
  $("#diff-a").replaceChildren(runLink(a));
  $("#diff-b").replaceChildren(runLink(b));
  $("#diff-first").textContent = "";
  $("#diff-body").replaceChildren();
  if (!state.key) return;
  let diff;
  const pairs = [];
  try {
    let offset = 0;
    do { // page after page (the API sends at most 500 pairs at a time)
      diff = await api(`v1/diff?${new URLSearchParams({ a, b, offset: String(offset) })}`);
      pairs.push(...diff.pairs);
      offset = diff.next_offset;
    } while (offset != null && location.hash === diffHash(a, b));
  } catch (error) {
    report(error);
    return;
  }
  if (location.hash !== diffHash(a, b)) return; // navigated away meanwhile
  banner("");
  $("#diff-first").textContent = summary(diff);
  const rows = pairs.map(pairRow);
  if (!rows.length) rows.push(h("tr", {}, h("td", { colspan: 3, class: "muted" }, "No steps.")));
  $("#diff-body").replaceChildren(...rows);
}

function summary(diff) {
  const first = diff.first_divergence;
  if (!first) {
    return diff.differing ? "Same steps asked for; outputs differ." : "No difference.";
  }
  const where = [["A", first.a], ["B", first.b]].filter(([, s]) => s)
    .map(([name, s]) => `${name} seq ${s.seq}`).join(", ");
  return `First divergence: step ${first.index + 1} (${where}); ${diff.differing} of ` +
    `${diff.total_pairs} steps differ.`;
}

function pairRow(pair) {
  const classes = ["diff-pair"];
  if (pair.first) classes.push("first-divergence");
  else if (pair.diverged) classes.push("diverged");
  else if (pair.changed.length) classes.push("differs");
  const dataset = { index: pair.index };
  if (pair.a) dataset.aSeq = pair.a.seq;
  if (pair.b) dataset.bSeq = pair.b.seq;
  const system = Boolean((pair.a && pair.a.system) || (pair.b && pair.b.system));
  return h("tr", { class: classes.join(" "), dataset },
    h("td", { class: "num diff-index" }, pair.index + 1,
      pair.first ? h("div", { class: "diff-flag" }, "first divergence") : null),
    sideCell(pair.a, pair, "a", system), sideCell(pair.b, pair, "b", system));
}

function sideCell(step, pair, side, system) {
  if (!step) return h("td", { class: `diff-side side-${side} diff-none muted` }, "no such step");
  const changed = new Set(pair.changed);
  const field = (name, label, value) => h("div",
    { class: `diff-field f-${name}${changed.has(name) ? " changed" : ""}` },
    h("h3", {}, label), h("pre", {}, value === "" ? "–" : value));
  const nums = [
    h("span", { class: `f-tokens${changed.has("tokens") ? " changed" : ""}` },
      `tokens ${tokens(step.tokens)}`),
    h("span", { class: `f-cost${changed.has("cost") ? " changed" : ""}` },
      `cost ${step.cost_usd == null ? "–" : money(step.cost_usd)}`),
    h("span", { class: "f-latency" }, `latency ${duration(step.latency_ms)}`),
  ];
  return h("td", { class: `diff-side side-${side}`, dataset: { seq: step.seq } },
    h("div", { class: "diff-head" }, h("span", { class: "mono" }, `seq ${step.seq}`), " ",
      h("span", { class: `kind k-${step.kind}` }, step.kind), " ",
      h("span", { class: "mono" }, step.name || "")),
    system ? field("system", "System prompt", step.system) : null,
    field("prompt", step.kind === "tool" ? "Arguments" : "Prompt", step.prompt),
    field("output", "Output", step.output),
    h("div", { class: "diff-nums muted" }, ...nums));
}

export function setupDiffView() {
  $("#compare-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const a = $("#compare-a").value.trim();
    const b = $("#compare-b").value.trim();
    if (a && b) location.hash = diffHash(a, b);
  });
}
