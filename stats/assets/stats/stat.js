// /stat: renders the dashboard from its JSON and refreshes it every few seconds.
// No library: the grid is a table and the charts are inline SVG.
(function () {
  "use strict";

  const root = document.getElementById("stat");
  if (!root) return;
  const dataUrl = root.dataset.url;
  const refreshMs = Number(root.dataset.refresh || 5) * 1000;
  let data = JSON.parse(document.getElementById("stat-data").textContent);
  let loadedAt = Date.now();

  const STATE_ORDER = [
    "invalid", "suspended", "exhausted", "rate_limited", "unavailable", "ok", "disabled",
  ];
  const STATE_LABEL = {
    invalid: "Invalid",
    suspended: "Suspended",
    exhausted: "Quota exhausted",
    rate_limited: "Rate-limited",
    unavailable: "Unavailable",
    ok: "OK",
    disabled: "Disabled",
  };
  const PALETTE = [
    "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948",
    "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac", "#1f77b4", "#8c564b",
  ];

  const $ = (id) => document.getElementById(id);

  function esc(value) {
    return String(value ?? "").replace(/[&<>"']/g, (c) => ({
      "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;",
    })[c]);
  }

  function num(n) {
    n = Number(n || 0);
    if (n >= 1e9) return (n / 1e9).toFixed(1) + "G";
    if (n >= 1e6) return (n / 1e6).toFixed(1) + "M";
    if (n >= 1e4) return (n / 1e3).toFixed(0) + "k";
    if (n >= 1e3) return (n / 1e3).toFixed(1) + "k";
    return String(Math.round(n));
  }

  function duration(seconds) {
    seconds = Math.max(0, Math.floor(seconds));
    const h = Math.floor(seconds / 3600);
    const m = Math.floor((seconds % 3600) / 60);
    const s = seconds % 60;
    const pad = (v) => String(v).padStart(2, "0");
    return h ? `${h}h ${pad(m)}m ${pad(s)}s` : `${m}m ${pad(s)}s`;
  }

  function when(iso) {
    if (!iso) return "";
    const at = new Date(iso);
    const sameDay = at.toDateString() === new Date().toDateString();
    return sameDay ? at.toLocaleTimeString() : at.toLocaleString();
  }

  function colorOf(index) {
    return index < PALETTE.length ? PALETTE[index] : `hsl(${(index * 137.5) % 360} 55% 50%)`;
  }

  // ------------------------------------------------------------------------ header

  function renderHeader() {
    $("day").textContent = `(quota day ${data.day})`;
    $("reset-at").textContent = `at ${when(data.reset.at)}`;
    const t = data.totals;
    $("totals").innerHTML = [
      ["Requests", t.requests], ["Successes", t.successes], ["Failures", t.failures],
      ["Rate-limited", t.rate_limited], ["Tokens", t.total_tokens],
    ].map(([k, v]) => `<div><dt>${k}</dt><dd title="${esc(v)}">${num(v)}</dd></div>`).join("");
    const rows = data.keys.map((k) => `<tr${k.usable ? "" : ' class="muted"'}>
        <td>${esc(k.name || "key")}</td><td><code>${esc(k.prefix)}</code></td>
        <td class="n">${num(k.requests)}</td><td class="n">${num(k.successes)}</td>
        <td class="n">${num(k.failures)}</td><td class="n">${num(k.total_tokens)}</td></tr>`);
    $("keys").innerHTML = `<thead><tr><th>Name</th><th>Key</th><th>Requests</th><th>✓</th>
      <th>✗</th><th>Tokens</th></tr></thead><tbody>${rows.join("") ||
      '<tr><td colspan="6" class="muted">No API keys.</td></tr>'}</tbody>`;
    const aliased = data.aliased.map((a) => `<tr><td><code>${esc(a.requested_model)}</code></td>
        <td><code>${esc(a.model)}</code></td><td class="n">${num(a.requests)}</td>
        <td class="n">${num(a.total_tokens)}</td></tr>`);
    $("aliased").innerHTML = `<thead><tr><th>Asked for</th><th>Served by</th><th>Requests</th>
      <th>Tokens</th></tr></thead><tbody>${aliased.join("") ||
      '<tr><td colspan="4" class="muted">No aliased requests today.</td></tr>'}</tbody>`;
  }

  function tick() {
    const left = data.reset.seconds - (Date.now() - loadedAt) / 1000;
    $("reset-in").textContent = duration(left);
  }

  // -------------------------------------------------------------------------- grid

  function markOf(credential, model) {
    if (credential.status !== "active") {
      // Invalid or suspended: the credential itself is refused, for every model.
      return {
        state: credential.status, label: `${credential.status_label} (all models)`, until: null,
        message: credential.error || "Upstream refused this credential.",
      };
    }
    const cell = credential.cells[model];
    return cell && cell.mark ? cell.mark : null;
  }

  function groupKey(credential, group) {
    if (group === "state") return credential.state;
    if (group === "kind") return credential.kind_label;
    if (group === "project") return credential.project || "(no project)";
    return "";
  }

  function cellHtml(credential, model) {
    const cell = credential.cells[model] || {};
    const mark = markOf(credential, model);
    let body = cell.requests
      ? `<b>${num(cell.requests)}</b><span class="sf">✓${num(cell.successes)} ✗${num(cell.failures)}</span>` +
        `<span class="tok">${num(cell.total_tokens)} tok</span>`
      : '<span class="zero">·</span>';
    if (!mark) {
      return `<td class="cell${credential.enabled ? "" : " off"}">${body}</td>`;
    }
    const until = mark.until ? ` until ${when(mark.until)}` : "";
    body += `<span class="tag">${esc(STATE_LABEL[mark.state] || mark.label)}${esc(until)}</span>`;
    return `<td class="cell mark mark-${esc(mark.state)}" tabindex="0" role="button"
      data-credential="${credential.id}" data-model="${esc(model)}"
      title="${esc(mark.label)}${esc(until)}: click for upstream's message">${body}</td>`;
  }

  function renderGrid() {
    const filter = $("filter").value.trim().toLowerCase();
    const group = $("group").value;
    const models = data.models;
    const credentials = data.credentials.filter((c) => !filter ||
      [c.label, c.mask, c.project, c.kind_label].join(" ").toLowerCase().includes(filter));
    const counts = {};
    for (const c of data.credentials) counts[c.state] = (counts[c.state] || 0) + 1;
    $("states").innerHTML = STATE_ORDER.filter((s) => counts[s])
      .map((s) => `<span class="pill state-${s}">${counts[s]} ${esc(STATE_LABEL[s])}</span>`)
      .join(" ");

    const groups = new Map();
    for (const c of credentials) {
      const key = groupKey(c, group);
      if (!groups.has(key)) groups.set(key, []);
      groups.get(key).push(c);
    }
    const keys = [...groups.keys()].sort((a, b) => group === "state"
      ? STATE_ORDER.indexOf(a) - STATE_ORDER.indexOf(b) : String(a).localeCompare(String(b)));

    const head = `<thead><tr><th class="cred">Credential</th><th class="n">Today</th>${
      models.map((m) => `<th class="model">${esc(m)}</th>`).join("")}</tr></thead>`;
    const body = [];
    for (const key of keys) {
      const members = groups.get(key);
      if (group !== "none") {
        const title = group === "state" ? STATE_LABEL[key] : key;
        body.push(`<tr class="group"><th colspan="${models.length + 2}">
          ${esc(title)} <span class="muted">(${members.length})</span></th></tr>`);
      }
      for (const c of members) {
        const today = Object.values(c.cells).reduce((sum, cell) => sum + (cell.requests || 0), 0);
        body.push(`<tr><th class="cred state-${esc(c.state)}" scope="row">
            <span class="pill state-${esc(c.state)}">${esc(STATE_LABEL[c.state])}</span>
            <span class="label">${esc(c.label || "(no label)")}</span>
            <code>${esc(c.mask)}</code>
            <span class="kind">${esc(c.kind_label)}${c.project ? " · " + esc(c.project) : ""}</span>
          </th><td class="n">${num(today)}</td>${models.map((m) => cellHtml(c, m)).join("")}</tr>`);
      }
    }
    const refusedTotal = Object.values(data.refused).reduce((a, b) => a + b, 0);
    if (refusedTotal) {
      body.push(`<tr class="refused"><th class="cred">No credential (refused, or deleted since)</th>
        <td class="n">${num(refusedTotal)}</td>${
        models.map((m) => `<td class="cell">${num(data.refused[m] || 0)}</td>`).join("")}</tr>`);
    }
    if (!data.credentials.length) {
      body.push(`<tr><td colspan="${models.length + 2}" class="muted">
        This pool has no credentials yet.</td></tr>`);
    } else if (!credentials.length) {
      body.push(`<tr><td colspan="${models.length + 2}" class="muted">
        No credential matches the filter.</td></tr>`);
    }
    $("grid").innerHTML = head + `<tbody>${body.join("")}</tbody>`;
  }

  function openDetail(target) {
    const credential = data.credentials.find((c) => String(c.id) === target.dataset.credential);
    if (!credential) return;
    const model = target.dataset.model;
    const mark = markOf(credential, model);
    if (!mark) return;
    $("detail-title").textContent =
      `${credential.label || "(no label)"} ${credential.mask} · ${model}`;
    $("detail-reason").textContent = mark.label;
    $("detail-reason").className = `reason state-${mark.state}`;
    $("detail-until").textContent = mark.until
      ? `Not used for this model until ${new Date(mark.until).toLocaleString()}.`
      : mark.state === "suspended"
        ? "Not used for any model until an operator restores it."
        : "Not used for any model until it is re-checked or an operator restores it.";
    $("detail-message").textContent = mark.message || "(upstream gave no message)";
    $("detail").showModal();
  }

  $("grid").addEventListener("click", (event) => {
    const target = event.target.closest("td.mark");
    if (target) openDetail(target);
  });
  $("grid").addEventListener("keydown", (event) => {
    const target = event.target.closest("td.mark");
    if (target && (event.key === "Enter" || event.key === " ")) {
      event.preventDefault();
      openDetail(target);
    }
  });
  $("filter").addEventListener("input", renderGrid);
  $("group").addEventListener("change", renderGrid);

  // ------------------------------------------------------------------------ charts

  const W = 760, H = 190, PAD_L = 56, PAD_R = 12, PAD_T = 12, PAD_B = 26;

  function axes(max, format, days) {
    const plotH = H - PAD_T - PAD_B;
    const parts = [];
    for (const fraction of [0, 0.5, 1]) {
      const y = PAD_T + plotH * (1 - fraction);
      parts.push(`<line class="gridline" x1="${PAD_L}" x2="${W - PAD_R}" y1="${y}" y2="${y}"/>`,
        `<text class="axis" x="${PAD_L - 6}" y="${y + 4}" text-anchor="end">${
          esc(format(max * fraction))}</text>`);
    }
    const step = (W - PAD_L - PAD_R) / days.length;
    days.forEach((day, i) => {
      if (i % 5 === 4 || i === days.length - 1) {
        parts.push(`<text class="axis" x="${PAD_L + step * (i + 0.5)}" y="${H - 8}"
          text-anchor="middle">${esc(day.slice(5))}</text>`);
      }
    });
    return parts.join("");
  }

  function stackedBars(title, field, models, format) {
    const days = data.series.days;
    const totals = days.map((_, i) => models.reduce(
      (sum, m) => sum + data.series.models[m][field][i], 0));
    const max = Math.max(1, ...totals);
    const plotH = H - PAD_T - PAD_B;
    const step = (W - PAD_L - PAD_R) / days.length;
    const bars = [];
    days.forEach((day, i) => {
      let base = 0;
      models.forEach((m) => {
        const value = data.series.models[m][field][i];
        if (!value) return;
        const h = (value / max) * plotH;
        const y = PAD_T + plotH - base - h;
        bars.push(`<rect x="${PAD_L + step * i + step * 0.1}" y="${y}" width="${step * 0.8}"
          height="${h}" fill="${colorOf(data.series.order[m])}"><title>${esc(day)} ${esc(m)}: ${
          esc(value.toLocaleString())}</title></rect>`);
        base += h;
      });
    });
    return `<figure><figcaption>${esc(title)}</figcaption><svg viewBox="0 0 ${W} ${H}"
      role="img" aria-label="${esc(title)}">${axes(max, format, days)}${bars.join("")}</svg></figure>`;
  }

  function errorRateLine(models) {
    const days = data.series.days;
    const series = models.length === 1 ? data.series.models[models[0]] : data.series.total;
    const rates = series.error_rate;
    const max = Math.max(0.05, ...rates.filter((r) => r !== null));
    const plotH = H - PAD_T - PAD_B;
    const step = (W - PAD_L - PAD_R) / days.length;
    const point = (r, i) => [PAD_L + step * (i + 0.5), PAD_T + plotH * (1 - r / max)];
    const segments = [];
    let current = [];
    rates.forEach((r, i) => {
      if (r === null) {
        if (current.length) segments.push(current);
        current = [];
      } else {
        current.push(point(r, i));
      }
    });
    if (current.length) segments.push(current);
    const lines = segments.map((s) =>
      `<polyline class="rate" points="${s.map((p) => p.join(",")).join(" ")}"/>`);
    const dots = rates.map((r, i) => {
      if (r === null) return "";
      const [x, y] = point(r, i);
      return `<circle class="rate" cx="${x}" cy="${y}" r="3"><title>${esc(days[i])}: ${
        (r * 100).toFixed(1)}% of ${series.requests[i].toLocaleString()} requests failed</title></circle>`;
    });
    const title = "Error rate (failed attempts / all attempts)";
    return `<figure><figcaption>${title}</figcaption><svg viewBox="0 0 ${W} ${H}" role="img"
      aria-label="${title}">${axes(max, (v) => (v * 100).toFixed(0) + "%", days)}${
      lines.join("")}${dots.join("")}</svg></figure>`;
  }

  function renderCharts() {
    const all = Object.keys(data.series.models);
    data.series.order = Object.fromEntries(all.map((m, i) => [m, i]));
    const select = $("chart-model");
    const chosen = select.value;
    select.innerHTML = '<option value="">all models</option>' + all.map((m) =>
      `<option value="${esc(m)}"${m === chosen ? " selected" : ""}>${esc(m)}</option>`).join("");
    const models = chosen && all.includes(chosen) ? [chosen] : all;
    if (!all.length) {
      $("charts").innerHTML = '<p class="muted">No requests in the last 30 days.</p>';
      $("legend").innerHTML = "";
      return;
    }
    $("charts").innerHTML = stackedBars("Requests per day", "requests", models, num) +
      stackedBars("Tokens per day", "tokens", models, num) + errorRateLine(models);
    $("legend").innerHTML = models.map((m) => `<span><i style="background:${
      colorOf(data.series.order[m])}"></i>${esc(m)}</span>`).join("");
  }

  $("chart-model").addEventListener("change", renderCharts);

  // ----------------------------------------------------------------------- refresh

  function renderAll() {
    renderHeader();
    renderGrid();
    renderCharts();
    tick();
  }

  async function refresh() {
    if (document.hidden) return;
    try {
      const response = await fetch(dataUrl, {
        headers: { Accept: "application/json" }, credentials: "same-origin", cache: "no-store",
      });
      if (response.status === 401 || response.status === 403) {
        window.location.reload(); // signed out or key revoked: show the sign-in form
        return;
      }
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      data = await response.json();
      loadedAt = Date.now();
      renderAll();
      $("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
    } catch (error) {
      $("updated").textContent = `refresh failed (${error.message}); retrying`;
    }
  }

  renderAll();
  $("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
  setInterval(tick, 1000);
  setInterval(refresh, refreshMs);
})();
