// A job at a glance, drawn on the job page: one row per host, one bar per step coloured by its status, the
// slowest steps outlined and listed, and a small chart of the hosts done / failed / running over time. Its data is
// GET /api/job/{job_id}/timeline/ (one page of hosts, with the chart's series); it follows the job once a second
// while a host is PENDING or RUNNING. Readable without a mouse (the rows are one tab stop, arrows move between
// them, Enter opens the host's log) and without the drawing (both have a table with the same data).
// No framework; under the page's policy nothing is inline: geometry goes through element.style properties and
// SVG attributes, text through textContent.
//   window.NodeopsTimeline.mount(container, jobId, { api, logHref, pagesize }) -> stop()
// `api(path)` is the viewer's JSON reader (the envelope's data, or a thrown error with a message).
"use strict";

(() => {
  const SVG_NS = "http://www.w3.org/2000/svg";
  const ACTIVE = new Set(["PENDING", "RUNNING"]);
  const POLL_MS = 1000;
  const MAX_BACKOFF_MS = 8000;
  const PAGESIZE = 100; // rows drawn at most; the rest are a page away
  const SLOWEST = 5;
  const MIN_SLOW_MS = 100; // shorter steps are never called slow: they are the noise of a fast host
  const CHART_W = 600;
  const CHART_H = 120;
  const SERIES = ["done", "failed", "running"];

  const LABELS = {
    en: {
      title: "Timeline",
      chart: "Hosts over time",
      done: "Done",
      failed: "Failed",
      running: "Running",
      live: "Live: redrawn every second while hosts run.",
      ended: (status) => `Job ${status}.`,
      slowest: "Slowest steps",
      noSlow: "No step has taken any time yet.",
      table: "Timeline as a table",
      chartTable: "Chart as a table",
      host: "Host",
      step: "Step",
      status: "Status",
      started: "Started",
      finished: "Finished",
      took: "Took",
      time: "Time",
      prev: "Previous hosts",
      next: "Next hosts",
      range: (a, b, n) => `Hosts ${a}–${b} of ${n}`,
      noHosts: "No host in this job.",
      error: "Timeline not refreshed: ",
      rows: "Hosts and their steps; arrow keys move between hosts, Enter opens a host's log",
      slowMark: (n) => `slowest #${n}`,
      chartSummary: (p) => `At ${p.time}: ${p.done} done, ${p.failed} failed, ${p.running} running`,
    },
    zh: {
      title: "时间线",
      chart: "主机数随时间变化",
      done: "成功",
      failed: "失败",
      running: "执行中",
      live: "实时：主机执行期间每秒刷新。",
      ended: (status) => `任务 ${status}。`,
      slowest: "最慢的步骤",
      noSlow: "还没有耗时的步骤。",
      table: "时间线（表格）",
      chartTable: "图表（表格）",
      host: "主机",
      step: "步骤",
      status: "状态",
      started: "开始时间",
      finished: "完成时间",
      took: "耗时",
      time: "时间",
      prev: "上一页主机",
      next: "下一页主机",
      range: (a, b, n) => `主机 ${a}–${b}，共 ${n} 台`,
      noHosts: "该任务没有主机。",
      error: "时间线未刷新：",
      rows: "主机及其步骤；方向键在主机间移动，回车打开主机日志",
      slowMark: (n) => `最慢第 ${n}`,
      chartSummary: (p) => `${p.time}：成功 ${p.done}，失败 ${p.failed}，执行中 ${p.running}`,
    },
  };

  function labels() {
    const lang = (document.documentElement.lang || "en").toLowerCase();
    return lang.startsWith("zh") ? LABELS.zh : LABELS.en;
  }

  // An element with a class and a text (both optional).
  function node(tag, className, text) {
    const made = document.createElement(tag);
    if (className) made.className = className;
    if (text !== undefined && text !== null) made.textContent = String(text);
    return made;
  }

  function svg(tag, attrs) {
    const made = document.createElementNS(SVG_NS, tag);
    for (const [key, value] of Object.entries(attrs || {})) made.setAttribute(key, String(value));
    return made;
  }

  function took(ms) {
    if (ms === null || ms === undefined) return "—";
    const s = Math.max(0, ms) / 1000;
    if (s < 60) return `${s.toFixed(1)} s`;
    const m = Math.floor(s / 60);
    if (m < 60) return `${m} min ${Math.round(s % 60)} s`;
    return `${Math.floor(m / 60)} h ${m % 60} min`;
  }

  function headerRow(names) {
    const row = node("tr");
    for (const name of names) {
      const th = node("th", null, name);
      th.scope = "col";
      row.append(th);
    }
    return row;
  }

  function cells(values) {
    const row = node("tr");
    for (const value of values) row.append(node("td", null, value));
    return row;
  }

  function mount(container, jobId, options) {
    const opts = options || {};
    if (typeof opts.api !== "function") throw new TypeError("NodeopsTimeline.mount needs opts.api");
    const api = opts.api;
    const logHref = opts.logHref || ((id) => `#/task-list/${jobId}/log/${encodeURIComponent(id)}`);
    const pagesize = Math.min(500, Math.max(1, Number(opts.pagesize) || PAGESIZE));
    const t = labels();

    let page = 1;
    let stopped = false;
    let timer = null;
    let backoff = POLL_MS;
    let generation = 0; // a page change starts a new load: an older one's answer is dropped
    let focusedId = null; // the row that holds the tab stop
    const rowsById = new Map();

    // ---- the parts, built once ----
    const heading = node("h2", "tl-title", t.title);
    heading.id = `tl-title-${jobId}`;
    container.classList.add("timeline");
    container.setAttribute("aria-labelledby", heading.id);
    const live = node("p", "tl-live muted");
    live.setAttribute("role", "status");

    const chart = svg("svg", { class: "tl-chart", viewBox: `0 0 ${CHART_W} ${CHART_H}`, preserveAspectRatio: "none", role: "img" });
    const chartTitle = svg("title");
    chart.append(chartTitle);
    const lines = {};
    for (const name of SERIES) {
      lines[name] = svg("polyline", { class: `tl-line tl-line-${name}`, fill: "none", points: "" });
      chart.append(lines[name]);
    }
    const legend = node("p", "tl-legend");
    for (const name of SERIES) {
      const key = node("span", `tl-key tl-key-${name}`, t[name]);
      legend.append(key);
    }
    const chartBody = node("tbody");
    const chartTable = node("table", "grid tl-chart-table");
    chartTable.append(node("caption", "visually-hidden", t.chart), node("thead"), chartBody);
    chartTable.tHead.append(headerRow([t.time, t.done, t.failed, t.running]));
    const chartDetails = node("details", "tl-chart-text");
    chartDetails.append(node("summary", null, t.chartTable), chartTable);
    const chartFigure = node("figure", "tl-chart-box");
    const chartCaption = node("figcaption", "tl-chart-caption", t.chart);
    chartFigure.append(chartCaption, chart, legend, chartDetails);

    const axis = node("div", "tl-axis");
    axis.setAttribute("aria-hidden", "true");
    const axisStart = node("span");
    const axisEnd = node("span");
    axis.append(axisStart, axisEnd);
    const rows = node("div", "tl-rows");
    rows.setAttribute("role", "list");
    rows.setAttribute("aria-label", t.rows);
    const empty = node("p", "muted tl-empty", t.noHosts);
    empty.hidden = true;

    const pager = node("div", "tl-pager");
    const prev = node("button", "link-button", `← ${t.prev}`);
    const next = node("button", "link-button", `${t.next} →`);
    prev.type = next.type = "button";
    const range = node("span", "muted");
    pager.append(prev, range, next);
    pager.hidden = true;
    prev.addEventListener("click", () => { page = Math.max(1, page - 1); focusedId = null; reload(); });
    next.addEventListener("click", () => { page += 1; focusedId = null; reload(); });

    const slowHeading = node("h3", "tl-subtitle", t.slowest);
    const slowList = node("ol", "tl-slowest");

    const textBody = node("tbody");
    const textTable = node("table", "grid tl-table");
    textTable.append(node("caption", "visually-hidden", t.table), node("thead"), textBody);
    textTable.tHead.append(headerRow([t.host, t.step, t.status, t.started, t.finished, t.took]));
    const textDetails = node("details", "tl-text");
    textDetails.append(node("summary", null, t.table), node("div", "table-wrap"));
    textDetails.lastChild.append(textTable);

    container.replaceChildren(heading, live, chartFigure, pager, axis, rows, empty, slowHeading, slowList, textDetails);

    // ---- keyboard: the rows are one tab stop; arrows, Home and End move it; Enter opens the host's log ----
    rows.addEventListener("keydown", (event) => {
      const all = Array.from(rows.children);
      const at = all.indexOf(document.activeElement);
      if (at < 0) return;
      let to = null;
      if (event.key === "ArrowDown") to = Math.min(all.length - 1, at + 1);
      else if (event.key === "ArrowUp") to = Math.max(0, at - 1);
      else if (event.key === "Home") to = 0;
      else if (event.key === "End") to = all.length - 1;
      else if (event.key === "Enter") {
        event.preventDefault();
        location.hash = all[at].dataset.href;
        return;
      }
      if (to === null) return;
      event.preventDefault();
      focusRow(all[to]);
    });

    function focusRow(row) {
      for (const other of rows.children) other.tabIndex = other === row ? 0 : -1;
      focusedId = row.dataset.instanceId;
      row.focus();
    }

    // ---- drawing ----
    function draw(data, nowMs) {
      const hosts = data.list || [];
      let t0 = data.start_ms;
      let t1 = data.end_ms || nowMs;
      for (const host of hosts) {
        for (const step of host.steps) {
          if (step.start_ms !== null && step.start_ms < t0) t0 = step.start_ms;
          const end = step.finish_ms !== null ? step.finish_ms : (step.start_ms !== null && step.status === "RUNNING" ? nowMs : null);
          if (end !== null && end > t1) t1 = end;
        }
      }
      const span = Math.max(1000, t1 - t0);
      const pct = (ms) => Math.min(100, Math.max(0, ((ms - t0) / span) * 100));

      // every started step's length; the slowest SLOWEST of the page are outlined and listed
      const timed = [];
      for (const host of hosts) {
        for (const step of host.steps) {
          if (step.start_ms === null) continue;
          const end = step.finish_ms !== null ? step.finish_ms : (ACTIVE.has(step.status) ? nowMs : step.start_ms);
          timed.push({ host, step, ms: Math.max(0, end - step.start_ms) });
        }
      }
      const slow = timed.filter((item) => item.ms >= MIN_SLOW_MS).sort((a, b) => b.ms - a.ms).slice(0, SLOWEST);
      const rank = new Map(slow.map((item, index) => [item.step, index + 1]));
      const lengths = new Map(timed.map((item) => [item.step, item.ms]));

      axisStart.textContent = data.start_time || "";
      axisEnd.textContent = data.end_time || took(t1 - t0);

      // rows, kept by instance_id so that focus and the bars' nodes survive each redraw
      const seen = new Set();
      const ordered = [];
      for (const host of hosts) {
        const id = host.instance_id;
        seen.add(id);
        let entry = rowsById.get(id);
        if (!entry) {
          const row = node("div", "tl-row");
          row.setAttribute("role", "listitem");
          row.dataset.instanceId = id;
          row.tabIndex = -1;
          const name = node("a", "tl-host");
          name.tabIndex = -1; // the row is the tab stop; Enter follows this link
          const track = node("div", "tl-track");
          track.setAttribute("aria-hidden", "true");
          row.append(name, track);
          row.addEventListener("focus", () => { focusedId = id; });
          entry = { row, name, track, bars: [] };
          rowsById.set(id, entry);
        }
        ordered.push(entry.row);
        const href = logHref(id);
        entry.row.dataset.href = href;
        entry.row.dataset.status = host.status;
        entry.name.href = href;
        entry.name.textContent = host.ip || id;
        entry.name.title = id;
        while (entry.bars.length > host.steps.length) entry.bars.pop().remove();
        let cursor = 0; // where the steps that never started are shown: after the last one drawn
        let unstarted = 0;
        const spoken = [];
        host.steps.forEach((step, index) => {
          let bar = entry.bars[index];
          if (!bar) {
            bar = node("span");
            entry.bars.push(bar);
            entry.track.append(bar);
          }
          const n = rank.get(step);
          bar.className = `tl-bar tl-bar-${step.status}${n ? " tl-slow" : ""}${step.start_ms === null ? " tl-bar-unstarted" : ""}`;
          bar.dataset.step = step.step;
          bar.dataset.status = step.status;
          let left;
          let width;
          if (step.start_ms === null) {
            left = Math.min(98, cursor + 0.4 + unstarted * 1.2);
            unstarted += 1;
            width = 0;
          } else {
            const end = step.start_ms + (lengths.get(step) || 0);
            left = pct(step.start_ms);
            width = pct(end) - left;
            cursor = left + width;
          }
          bar.style.left = `${left.toFixed(3)}%`;
          bar.style.width = `${width.toFixed(3)}%`;
          const length = step.start_ms === null ? "" : ` · ${took(lengths.get(step))}`;
          bar.title = `${step.step} · ${step.status}${length}${n ? ` · ${t.slowMark(n)}` : ""}`;
          if (n) bar.dataset.rank = String(n);
          else delete bar.dataset.rank;
          spoken.push(`${step.step} ${step.status}${length}${n ? ` (${t.slowMark(n)})` : ""}`);
        });
        entry.row.setAttribute("aria-label", `${host.ip || id} ${host.status}: ${spoken.join(", ")}`);
      }
      for (const [id, entry] of rowsById) {
        if (!seen.has(id)) { entry.row.remove(); rowsById.delete(id); }
      }
      const inOrder = ordered.length === rows.children.length && ordered.every((row, i) => rows.children[i] === row);
      if (!inOrder) rows.replaceChildren(...ordered);
      const holder = ordered.find((row) => row.dataset.instanceId === focusedId) || ordered[0];
      for (const row of ordered) row.tabIndex = row === holder ? 0 : -1;
      empty.hidden = hosts.length > 0;

      // the slowest steps, in words
      slowList.replaceChildren(...(slow.length ? slow.map((item, index) => {
        const li = node("li");
        const link = node("a", null, item.host.ip || item.host.instance_id);
        link.href = logHref(item.host.instance_id);
        li.append(link, ` · ${item.step.step} · ${item.step.status} · ${took(item.ms)}`);
        li.dataset.rank = String(index + 1);
        return li;
      }) : [node("li", "muted", t.noSlow)]));

      // the text alternative: every step of the page
      const textRows = [];
      for (const host of hosts) {
        for (const step of host.steps) {
          const row = cells([host.ip || host.instance_id, step.step, step.status, step.start_time || "—", step.finish_time || "—",
            step.start_ms === null ? "—" : took(lengths.get(step))]);
          row.dataset.instanceId = host.instance_id;
          textRows.push(row);
        }
      }
      textBody.replaceChildren(...textRows);

      // pages
      const total = data.total || 0;
      pager.hidden = total <= pagesize;
      prev.disabled = page <= 1;
      next.disabled = page * pagesize >= total;
      range.textContent = t.range(total ? (page - 1) * pagesize + 1 : 0, Math.min(total, page * pagesize), total);

      drawChart(data.series || { points: [] }, data.statistics || {});
    }

    function drawChart(series, statistics) {
      const points = series.points || [];
      const top = Math.max(1, statistics.total_count || 0, ...points.map((p) => p.done + p.failed + p.running));
      const first = points.length ? points[0].time_ms : 0;
      const spanMs = points.length > 1 ? Math.max(1, points[points.length - 1].time_ms - first) : 1;
      for (const name of SERIES) {
        const coords = points.map((p) => {
          const x = ((p.time_ms - first) / spanMs) * CHART_W;
          const y = CHART_H - 2 - (p[name] / top) * (CHART_H - 4);
          return `${x.toFixed(1)},${y.toFixed(1)}`;
        });
        lines[name].setAttribute("points", coords.join(" "));
      }
      const last = points[points.length - 1];
      const summary = last ? t.chartSummary(last) : t.chart;
      chartTitle.textContent = summary;
      chart.setAttribute("aria-label", `${t.chart}. ${summary}`);
      chartBody.replaceChildren(...points.map((p) => cells([p.time, p.done, p.failed, p.running])));
    }

    // ---- following ----
    async function load() {
      timer = null;
      if (stopped) return;
      if (!container.isConnected) { stop(); return; } // the view went away without saying so
      const mine = ++generation;
      let data;
      try {
        data = await api(`/api/job/${jobId}/timeline/?page=${page}&pagesize=${pagesize}`);
      } catch (exc) {
        if (stopped || mine !== generation) return;
        live.textContent = t.error + (exc && exc.message ? exc.message : String(exc));
        backoff = Math.min(MAX_BACKOFF_MS, backoff * 2);
        timer = window.setTimeout(load, backoff);
        return;
      }
      if (stopped || mine !== generation) return;
      backoff = POLL_MS;
      draw(data, data.now_ms);
      const running = ACTIVE.has(data.status) || (data.list || []).some((host) => ACTIVE.has(host.status));
      container.dataset.live = running ? "1" : "0";
      if (running) {
        live.textContent = t.live;
        timer = window.setTimeout(load, POLL_MS);
      } else {
        live.textContent = t.ended(data.status);
      }
    }

    function reload() {
      if (timer) window.clearTimeout(timer);
      load();
    }

    function stop() {
      stopped = true;
      if (timer) window.clearTimeout(timer);
      timer = null;
      container.dataset.live = "0";
    }

    load();
    return stop;
  }

  window.NodeopsTimeline = { mount };
})();
