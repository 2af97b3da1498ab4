// Killswitch console: the few lines of script the server-rendered pages need.
// - buttons with data-dialog open their confirmation dialog; its form is sent with the
//   page's CSRF token and the answer (the control plane's own words) is shown;
// - selector fields are checked as they are typed, by the console's /api/selector;
// - a program page follows its status live (server-sent events) and draws the curve of
//   acknowledgements against time since the commit;
// - a page with data-refresh reloads its content periodically.
"use strict";

(() => {
  const csrf = document.querySelector('meta[name="csrf-token"]')?.content ?? "";
  const main = document.getElementById("main");
  const toastBox = document.getElementById("toast");

  function toast(text, bad) {
    if (!toastBox) return;
    toastBox.textContent = text;
    toastBox.classList.toggle("bad", Boolean(bad));
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => { toastBox.textContent = ""; }, 10000);
  }

  function dialogOpen() {
    return document.querySelector("dialog[open]") !== null;
  }

  // Replaces the page's content with a fresh copy (not while a dialog is open).
  async function refresh() {
    if (!main || dialogOpen()) return;
    try {
      const response = await fetch(location.href, { credentials: "same-origin" });
      if (!response.ok) return;
      const page = new DOMParser().parseFromString(await response.text(), "text/html");
      const fresh = page.getElementById("main");
      if (fresh && !dialogOpen()) {
        // Keyboard users keep their place: focus returns to the element with the same id.
        const focused = document.activeElement?.id;
        main.innerHTML = fresh.innerHTML;
        if (live.last) show(live.last);
        if (focused) document.getElementById(focused)?.focus();
      }
      const banner = page.getElementById("stop-all-banner");
      const current = document.getElementById("stop-all-banner");
      if (banner && !current) main.before(banner);
      if (!banner && current) current.remove();
    } catch (_) {
      // The next refresh tries again.
    }
  }

  document.addEventListener("click", (event) => {
    const opener = event.target.closest("button[data-dialog]");
    if (opener && !opener.disabled) {
      const dialog = document.getElementById(opener.dataset.dialog);
      if (dialog) {
        dialog.querySelector(".result").textContent = "";
        dialog.showModal();
        dialog.querySelector("input:not([type=hidden])")?.focus();
      }
      return;
    }
    const closer = event.target.closest("button[data-close]");
    if (closer) closer.closest("dialog")?.close();
  });

  document.addEventListener("submit", async (event) => {
    const form = event.target.closest("form[data-action]");
    if (!form) return;
    event.preventDefault();
    const result = form.querySelector(".result");
    const button = form.querySelector("button[type=submit]");
    result.textContent = "";
    button.disabled = true;
    let answer;
    try {
      const response = await fetch(form.action, {
        method: "POST",
        credentials: "same-origin",
        headers: { "X-CSRF-Token": csrf, "Content-Type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams(new FormData(form)),
      });
      try {
        answer = await response.json();
      } catch (_) {
        answer = { ok: false, error: `the console answered ${response.status} ${response.statusText}` };
      }
    } catch (err) {
      answer = { ok: false, error: `cannot reach the console: ${err.message}` };
    }
    button.disabled = false;
    if (answer.ok) {
      form.closest("dialog").close();
      form.reset();
      toast(answer.message, false);
      refresh();
    } else {
      result.textContent = answer.error;
      toast(answer.error, true);
    }
  });

  // Selector fields: checked by the CLI's parser, 200 ms after the last key.
  document.addEventListener("input", (event) => {
    const input = event.target.closest("input[data-selector-check]");
    if (!input) return;
    clearTimeout(input.checkTimer);
    input.checkTimer = setTimeout(() => checkSelector(input), 200);
  });

  async function checkSelector(input) {
    const out = document.getElementById(input.getAttribute("aria-describedby"));
    const submit = input.form.querySelector("button[type=submit]");
    try {
      const response = await fetch(`/api/selector?selector=${encodeURIComponent(input.value)}`,
        { credentials: "same-origin" });
      const verdict = await response.json();
      out.textContent = verdict.pointer ? `${verdict.message}\n${verdict.pointer}` : verdict.message;
      out.classList.toggle("bad", !verdict.ok);
      input.setAttribute("aria-invalid", String(!verdict.ok));
      submit.disabled = !verdict.ok;
    } catch (_) {
      out.textContent = "";
      submit.disabled = false;
    }
  }

  // Live status of a program page.
  const live = { generation: null, points: [], last: null };

  function setField(name, value) {
    for (const element of main.querySelectorAll(`[data-field="${name}"]`)) {
      element.textContent = String(value);
    }
  }

  function show(update) {
    const status = update.status;
    const c = status.collectors;
    const state = status.state;
    for (const badge of main.querySelectorAll('.badge[data-field="state"]')) {
      badge.textContent = state;
      badge.className = `badge ${state.toLowerCase()}`;
    }
    setField("generation", status.generation);
    setField("actor", status.actor);
    setField("connected", c.connected);
    setField("acked", c.acked);
    setField("pending", c.pending_count);
    setField("errored", c.errored_count);
    setField("disconnected", c.disconnected_count);
    const progress = document.getElementById("progress");
    if (progress) {
      progress.max = Math.max(c.connected, 1);
      progress.value = c.acked;
    }
    const stragglers = document.getElementById("stragglers");
    if (stragglers) stragglers.innerHTML = update.stragglers_html;
    drawCurve(c.connected);
  }

  function onStatus(update) {
    const generation = update.status.generation;
    const changed = live.generation !== null && live.generation !== generation;
    if (live.generation !== generation) {
      live.generation = generation;
      live.points = [];
      if (update.elapsed_ms !== null) live.points.push({ t: 0, n: 0 });
    }
    if (update.elapsed_ms !== null) {
      live.points.push({ t: update.elapsed_ms, n: update.status.collectors.acked });
    }
    live.last = update;
    show(update);
    // A new generation may bring new rules, a rollout or an approval: redraw the rest.
    if (changed) refresh();
  }

  function drawCurve(total) {
    const svg = document.getElementById("curve");
    if (!svg) return;
    const W = 600, H = 200, left = 48, right = 12, top = 12, bottom = 30;
    const points = live.points;
    const maxT = Math.max(1000, ...points.map((p) => p.t)) * 1.05;
    const maxN = Math.max(1, total, ...points.map((p) => p.n));
    const x = (t) => left + (t / maxT) * (W - left - right);
    const y = (n) => H - bottom - (n / maxN) * (H - top - bottom);
    let path = "";
    points.forEach((p, i) => {
      if (i > 0) path += ` ${x(p.t).toFixed(1)},${y(points[i - 1].n).toFixed(1)}`;
      path += ` ${x(p.t).toFixed(1)},${y(p.n).toFixed(1)}`;
    });
    const seconds = (maxT / 1000).toFixed(maxT < 10000 ? 1 : 0);
    svg.innerHTML =
      `<line class="axis" x1="${left}" y1="${H - bottom}" x2="${W - right}" y2="${H - bottom}"/>` +
      `<line class="axis" x1="${left}" y1="${top}" x2="${left}" y2="${H - bottom}"/>` +
      `<text x="${left - 6}" y="${H - bottom}" text-anchor="end">0</text>` +
      `<text x="${left - 6}" y="${top + 10}" text-anchor="end">${maxN}</text>` +
      `<text x="${W - right}" y="${H - 8}" text-anchor="end">${seconds} s</text>` +
      `<text x="${left}" y="${H - 8}">0 s</text>` +
      (points.length ? `<polyline class="line" points="${path.trim()}"/>` : "");
    setField("curve-generation", live.generation ?? "");
    const lastPoint = points[points.length - 1];
    if (lastPoint) {
      setField("curve-summary",
        `${lastPoint.n} of ${total} acknowledged ${(lastPoint.t / 1000).toFixed(2)} s after the commit`);
    }
  }

  if (main?.dataset.events) {
    const source = new EventSource(main.dataset.events);
    source.addEventListener("status", (event) => onStatus(JSON.parse(event.data)));
    source.addEventListener("failure", (event) => toast(event.data, true));
  }

  if (main?.dataset.refresh) {
    setInterval(refresh, Number(main.dataset.refresh));
  }
})();
