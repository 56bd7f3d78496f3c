// The nodeops log viewer: hash routes over the job and log APIs, no framework and no build step.
//   #/                                      jobs (job_list), with a status filter and paging
//   #/task-list/{job_id}                    one job (details_job), kept current by /api/job/{id}/events/
//   #/task-list/{job_id}/log/{instance_id}  one instance's steps and logs, followed live while it runs
//   #/signin                                sign in with a bk_token (POST /web/session/, an HttpOnly cookie)
// Every text from the service is put into the page as text (never as HTML): logs may hold markup.
"use strict";

(() => {
  const AUTH_CODES = new Set([1306000, 1306403, 1306406]);
  const MISSING_API_CODES = new Set([3800404, 3800405]);
  const ACTIVE = new Set(["PENDING", "RUNNING"]);
  const STATUSES = ["PENDING", "RUNNING", "SUCCESS", "FAILED", "PART_FAILED", "TERMINATED", "IGNORED", "FILTERED", "REMOVED"];
  const STATUS_ICON = {
    PENDING: "○", RUNNING: "◔", SUCCESS: "✓", FAILED: "✗", PART_FAILED: "◑",
    TERMINATED: "■", IGNORED: "–", FILTERED: "–", REMOVED: "–",
  };
  const STATUS_TEXT = {
    PENDING: "等待执行", RUNNING: "正在执行", SUCCESS: "执行成功", FAILED: "执行失败", PART_FAILED: "部分失败",
    TERMINATED: "已终止", REMOVED: "已移除", FILTERED: "被过滤的", IGNORED: "已忽略",
  };
  const JOB_PAGESIZE = 20;
  const INSTANCE_PAGESIZE = 20;
  const POLL_MS = 1000;
  const MAX_TAIL_PAGES = 64; // a viewer shows at most this many pages of max_bytes; the download has the rest

  const main = document.getElementById("main");
  const announcer = document.getElementById("announcer");
  let cleanup = []; // what the current view must stop when the route changes (streams, timers)

  class ApiError extends Error {
    constructor(code, message, status) {
      super(message);
      this.code = code;
      this.status = status;
    }
  }

  // ---- small helpers -------------------------------------------------------------------------------------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else if (value === true) node.setAttribute(key, "");
      else node.setAttribute(key, String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function statusBadge(status, extra) {
    const known = STATUS_ICON[status] !== undefined;
    return el("span", {
      class: `status status-${known ? status : "UNKNOWN"}`,
      title: STATUS_TEXT[status] || status,
      "data-status": status,
    }, el("span", { class: "status-icon", "aria-hidden": "true", text: STATUS_ICON[status] || "?" }), ` ${status}`, extra || "");
  }

  function announce(text) {
    announcer.textContent = "";
    window.setTimeout(() => { announcer.textContent = text; }, 50);
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined || seconds === "") return "—";
    const s = Math.max(0, Math.round(Number(seconds)));
    if (s < 60) return `${s} s`;
    const m = Math.floor(s / 60);
    if (m < 60) return `${m} min ${s % 60} s`;
    return `${Math.floor(m / 60)} h ${m % 60} min`;
  }

  function stepSeconds(step) {
    if (!step.start_time) return null;
    const start = Date.parse(step.start_time.replace(" ", "T"));
    const end = step.finish_time ? Date.parse(step.finish_time.replace(" ", "T")) : NaN;
    if (Number.isNaN(start) || Number.isNaN(end)) return null;
    return (end - start) / 1000;
  }

  function escapeRegExp(text) {
    return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  }

  // The service counts characters (code points); JavaScript strings count UTF-16 units.
  function unitOffset(text, codePoints) {
    if (!/[\uD800-\uDFFF]/.test(text)) return codePoints;
    let units = 0;
    for (const char of text) {
      if (codePoints-- <= 0) break;
      units += char.length;
    }
    return units;
  }

  // Text with each [start, end) range (UTF-16 units, in order) in a <mark>.
  function marked(text, spans) {
    const out = [];
    let last = 0;
    for (const [start, end] of spans) {
      out.push(text.slice(last, start), el("mark", { text: text.slice(start, end) }));
      last = end;
    }
    out.push(text.slice(last));
    return out.filter((part) => part !== "");
  }

  function levelOf(line) {
    const match = /^\[[^\]]*?\b(DEBUG|INFO|WARNING|ERROR)\]/.exec(line);
    return match ? match[1] : "";
  }

  function encodeInstance(id) {
    return encodeURIComponent(id);
  }

  function setTitle(text) {
    document.title = text ? `${text} · nodeops` : "nodeops";
  }

  function focusHeading() {
    const heading = main.querySelector("h1");
    if (heading) {
      heading.setAttribute("tabindex", "-1");
      heading.focus({ preventScroll: false });
    }
  }

  // ---- API -----------------------------------------------------------------------------------------------

  async function api(path, options) {
    const opts = options || {};
    const init = { method: opts.method || "GET", credentials: "same-origin", headers: { "X-Nodeops-Web": "1" } };
    if (opts.body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(opts.body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (exc) {
      throw new ApiError(0, `The service did not answer (${exc.message}). Is it running?`, 0);
    }
    let answer = null;
    try {
      answer = await response.json();
    } catch (exc) {
      throw new ApiError(3800000 + response.status, `${path} answered HTTP ${response.status} without JSON`, response.status);
    }
    if (!answer || typeof answer !== "object" || !("result" in answer)) {
      const code = response.status === 404 ? 3800404 : 3800000 + response.status;
      throw new ApiError(code, `${path} answered HTTP ${response.status}`, response.status);
    }
    if (!answer.result) throw new ApiError(answer.code, answer.message || `error ${answer.code}`, response.status);
    return answer.data;
  }

  function query(params) {
    const search = new URLSearchParams();
    for (const [key, value] of Object.entries(params)) {
      if (value !== undefined && value !== null && value !== "") search.set(key, String(value));
    }
    return search.toString();
  }

  function showError(exc, container) {
    if (exc instanceof ApiError && AUTH_CODES.has(exc.code)) {
      const back = location.hash && !location.hash.startsWith("#/signin") ? location.hash : "#/";
      sessionStorage.setItem("nodeops.after-signin", back);
      location.hash = "#/signin";
      return;
    }
    const box = el("div", { class: "error", role: "alert" },
      el("strong", { text: exc instanceof ApiError && exc.code ? `Error ${exc.code}: ` : "Error: " }),
      exc.message || String(exc));
    (container || main).prepend(box);
  }

  // ---- routing -------------------------------------------------------------------------------------------

  function parseRoute() {
    const hash = location.hash || "#/";
    const [path, rawQuery] = hash.slice(1).split("?", 2);
    const params = new URLSearchParams(rawQuery || "");
    const parts = path.split("/").filter(Boolean);
    if (parts[0] === "signin") return { view: "signin", params };
    if (parts[0] === "task-list" && /^\d+$/.test(parts[1] || "")) {
      if (parts[2] === "log" && parts.length >= 4) {
        return { view: "instance", jobId: Number(parts[1]), instanceId: decodeURIComponent(parts.slice(3).join("/")), params };
      }
      return { view: "job", jobId: Number(parts[1]), params };
    }
    return { view: "jobs", params };
  }

  function stopView() {
    for (const stop of cleanup) {
      try { stop(); } catch (exc) { /* already stopped */ }
    }
    cleanup = [];
  }

  async function render() {
    if (location.hash && !location.hash.startsWith("#/")) return; // an in-page anchor, not a route
    stopView();
    const route = parseRoute();
    document.getElementById("who").hidden = route.view === "signin";
    main.replaceChildren(el("p", { class: "loading", text: "Loading…" }));
    try {
      if (route.view === "signin") await renderSignin(route);
      else if (route.view === "job") await renderJob(route);
      else if (route.view === "instance") await renderInstance(route);
      else await renderJobs(route);
    } catch (exc) {
      main.replaceChildren();
      showError(exc);
    }
    if (document.activeElement === document.body || !main.contains(document.activeElement)) focusHeading();
  }

  // ---- sign in -------------------------------------------------------------------------------------------

  async function renderSignin(route) {
    setTitle("Sign in");
    const input = el("input", {
      id: "bk-token", name: "bk_token", type: "password", autocomplete: "off", required: true, spellcheck: "false",
      "aria-describedby": "bk-token-help",
    });
    const message = el("div", { id: "signin-message", role: "alert" });
    const form = el("form", { class: "signin card", "aria-labelledby": "signin-title" },
      el("h1", { id: "signin-title", text: "Sign in to nodeops" }),
      el("label", { for: "bk-token", text: "bk_token" }),
      input,
      el("p", { id: "bk-token-help", class: "help" },
        "A ticket from ", el("code", { text: "nodeops token issue NAME" }), ". It is kept in an HttpOnly cookie."),
      el("button", { type: "submit", class: "primary", text: "Sign in" }),
      message);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      message.replaceChildren();
      try {
        const data = await api("/web/session/", { method: "POST", body: { bk_token: input.value.trim() } });
        const name = data && typeof data === "object" ? data.username || data.bk_username || "" : "";
        if (name) localStorage.setItem("nodeops.username", name);
        else localStorage.removeItem("nodeops.username");
        document.getElementById("who-name").textContent = name ? `Signed in as ${name}` : "";
        input.value = "";
        const next = sessionStorage.getItem("nodeops.after-signin") || "#/";
        sessionStorage.removeItem("nodeops.after-signin");
        location.hash = next === "#/signin" ? "#/" : next;
      } catch (exc) {
        message.replaceChildren(el("p", { class: "error", text: `Sign-in failed: ${exc.message}` }));
        input.focus();
      }
    });
    main.replaceChildren(form);
    input.focus();
    const given = route.params.get("bk_token"); // the sign-in link `make run` prints
    if (!given) return;
    history.replaceState(null, "", "#/signin"); // out of the address bar and the history
    input.value = given;
    const current = await currentSession();
    if (current === null) {
      form.requestSubmit();
      return;
    }
    // A link can carry anyone's token: followed unseen, it would swap the operator's session for its user's,
    // and what they do next would be done, and shown, as that user. So it asks.
    setTitle("Switch user?");
    const keep = el("button", {
      type: "button", text: current ? `Stay signed in as ${current}` : "Stay signed in",
      onclick: () => { input.value = ""; location.hash = "#/"; },
    });
    form.querySelector("button[type=submit]").textContent = "Sign in with the link's token";
    const heading = form.querySelector("h1");
    heading.textContent = "Switch user?";
    heading.after(el("p", { class: "error", id: "signin-switch", role: "alert" },
      `You are already signed in${current ? ` as ${current}` : ""}. This link signs in with the bk_token it carries, `,
      "which may be someone else's: what you do next would be done as its user. Sign in with it only if you ",
      "asked for this link."));
    form.append(keep);
    keep.focus();
  }

  // Whether the session cookie (HttpOnly, so unreadable here) still signs in: null when the service says it does
  // not, else the name it was opened for ("" when unknown). Any other answer counts as a session: better to ask.
  async function currentSession() {
    try {
      await api("/api/job/job_list/", { method: "POST", body: { page: 1, pagesize: 1 } });
    } catch (exc) {
      if (exc instanceof ApiError && AUTH_CODES.has(exc.code)) return null;
    }
    return localStorage.getItem("nodeops.username") || "";
  }

  async function signOut() {
    try {
      await api("/web/session/", { method: "DELETE" });
    } catch (exc) {
      // already signed out, or the service is away: the sign-in page says what to do next
    }
    localStorage.removeItem("nodeops.username");
    location.hash = "#/signin";
  }

  // ---- jobs ----------------------------------------------------------------------------------------------

  async function renderJobs(route) {
    setTitle("Jobs");
    const page = Math.max(1, Number(route.params.get("page")) || 1);
    const status = route.params.get("status") || "";
    const body = { page, pagesize: JOB_PAGESIZE, sort: { head: "id", sort_type: "DEC" } };
    if (status) body.status = [status];
    const data = await api("/api/job/job_list/", { method: "POST", body });
    const pages = Math.max(1, Math.ceil((data.total || 0) / JOB_PAGESIZE));

    const select = el("select", { id: "job-status", name: "status" },
      el("option", { value: "", text: "Any status" }),
      STATUSES.slice(0, 6).map((s) => el("option", { value: s, selected: s === status, text: `${s} (${STATUS_TEXT[s]})` })));
    const filter = el("form", { class: "filters", role: "search", "aria-label": "Filter jobs" },
      el("label", { for: "job-status", text: "Status" }), select,
      el("button", { type: "submit", text: "Filter" }));
    filter.addEventListener("submit", (event) => {
      event.preventDefault();
      location.hash = `#/?${query({ status: select.value, page: 1 })}`;
    });

    const rows = (data.list || []).map((job) => {
      const stats = job.statistics || {};
      return el("tr", {},
        el("td", {}, el("a", { href: `#/task-list/${job.id}`, text: `Job ${job.id}` })),
        el("td", {}, job.job_type_display ? `${job.job_type_display} ` : "", el("span", { class: "muted", text: job.job_type })),
        el("td", {}, statusBadge(job.status)),
        el("td", {}, statsText(stats)),
        el("td", { text: job.created_by || "" }),
        el("td", { text: job.start_time || "—" }),
        el("td", { text: duration(job.cost_time) }));
    });
    const table = el("table", { class: "grid" },
      el("caption", { text: `${data.total || 0} job${data.total === 1 ? "" : "s"}${status ? ` with status ${status}` : ""}` }),
      el("thead", {}, el("tr", {}, ["Job", "Type", "Status", "Hosts", "Created by", "Started", "Took"].map((h) => el("th", { scope: "col", text: h })))),
      el("tbody", {}, rows.length ? rows : el("tr", {}, el("td", { colspan: 7, class: "muted", text: "No job matches." }))));
    main.replaceChildren(
      el("h1", { text: "Jobs" }),
      filter,
      el("div", { class: "table-wrap" }, table),
      pager(page, pages, (p) => `#/?${query({ status, page: p })}`));
  }

  function statsText(stats) {
    const parts = [];
    for (const [key, label] of [["success_count", "ok"], ["failed_count", "failed"], ["running_count", "running"], ["pending_count", "pending"], ["ignored_count", "ignored"]]) {
      if (stats[key]) parts.push(`${stats[key]} ${label}`);
    }
    return `${stats.total_count || 0} total${parts.length ? ` · ${parts.join(", ")}` : ""}`;
  }

  function pager(page, pages, href) {
    return el("nav", { class: "pager", "aria-label": "Pages" },
      page > 1 ? el("a", { href: href(page - 1), rel: "prev", text: "← Previous" }) : el("span", { class: "muted", text: "← Previous" }),
      el("span", { text: ` Page ${page} of ${pages} ` }),
      page < pages ? el("a", { href: href(page + 1), rel: "next", text: "Next →" }) : el("span", { class: "muted", text: "Next →" }));
  }

  // ---- one job -------------------------------------------------------------------------------------------

  async function renderJob(route) {
    const jobId = route.jobId;
    const filters = {
      status: route.params.get("status") || "",
      ip: route.params.get("ip") || "",
      instance_id: route.params.get("instance_id") || "",
      page: Math.max(1, Number(route.params.get("page")) || 1),
    };
    setTitle(`Job ${jobId}`);
    const summary = el("section", { class: "card job-summary", "aria-labelledby": "job-title" });
    const instances = el("section", { "aria-labelledby": "instances-title" });
    const live = el("p", { class: "live muted", role: "status" });
    const filterForm = jobFilterForm(jobId, filters);
    main.replaceChildren(
      el("nav", { class: "breadcrumb", "aria-label": "Breadcrumb" }, el("a", { href: "#/", text: "Jobs" }), " › ", `Job ${jobId}`),
      summary, live,
      el("h2", { id: "instances-title", text: "Instances" }),
      filterForm, instances);
    const timeline = el("section", { class: "card", id: "timeline" });
    live.after(timeline); // a job at a glance (timeline.js), stopped with the view
    cleanup.push(window.NodeopsTimeline.mount(timeline, jobId, { api }));

    let latest = null;
    const load = async () => {
      const conditions = [];
      if (filters.status) conditions.push({ key: "status", value: [filters.status] });
      if (filters.ip) conditions.push({ key: "ip", value: filters.ip });
      if (filters.instance_id) conditions.push({ key: "instance_id", value: [filters.instance_id] });
      let data;
      try {
        data = await api(`/api/job/${jobId}/details/`, { method: "POST", body: { page: filters.page, pagesize: INSTANCE_PAGESIZE, conditions } });
      } catch (exc) {
        if (exc instanceof ApiError && exc.code === 3800001 && filters.page > 1 && /page/.test(exc.message)) {
          filters.page = 1;
          return load();
        }
        throw exc;
      }
      latest = data;
      renderJobSummary(summary, data);
      renderInstances(instances, jobId, data, filters);
      return data;
    };
    const first = await load();
    focusHeading();
    if (ACTIVE.has(first.status)) followJob(jobId, load, live);
    else live.textContent = `Job ${first.status}.`;
    return latest;
  }

  function jobFilterForm(jobId, filters) {
    const status = el("select", { id: "f-status", name: "status" },
      el("option", { value: "", text: "Any status" }),
      ["PENDING", "RUNNING", "SUCCESS", "FAILED"].map((s) => el("option", { value: s, selected: s === filters.status, text: s })));
    const ip = el("input", { id: "f-ip", name: "ip", type: "search", value: filters.ip, placeholder: "127.0.0", inputmode: "decimal" });
    const inst = el("input", { id: "f-instance", name: "instance_id", type: "search", value: filters.instance_id, placeholder: "host|instance|host|1" });
    const form = el("form", { class: "filters", role: "search", "aria-label": "Filter instances" },
      el("label", { for: "f-status", text: "Status" }), status,
      el("label", { for: "f-ip", text: "IP" }), ip,
      el("label", { for: "f-instance", text: "instance_id" }), inst,
      el("button", { type: "submit", text: "Filter" }),
      el("button", { type: "reset", text: "Clear" }));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      location.hash = `#/task-list/${jobId}?${query({ status: status.value, ip: ip.value.trim(), instance_id: inst.value.trim() })}`;
    });
    form.addEventListener("reset", (event) => {
      event.preventDefault();
      location.hash = `#/task-list/${jobId}`;
    });
    return form;
  }

  function renderJobSummary(section, data) {
    const stats = data.statistics || {};
    const total = stats.total_count || 0;
    const segments = [["success_count", "SUCCESS"], ["failed_count", "FAILED"], ["running_count", "RUNNING"], ["pending_count", "PENDING"], ["ignored_count", "IGNORED"]];
    const bar = el("div", { class: "progress", "aria-hidden": "true" },
      segments.filter(([key]) => stats[key]).map(([key, status]) =>
        el("span", { class: `seg seg-${status}`, style: null, "data-width": ((stats[key] / Math.max(1, total)) * 100).toFixed(2) })));
    for (const seg of bar.children) seg.style.width = `${seg.dataset.width}%`;
    section.replaceChildren(
      el("h1", { id: "job-title" }, `Job ${data.job_id} · ${data.job_type_display || data.job_type} `, statusBadge(data.status)),
      el("dl", { class: "facts" },
        fact("Type", data.job_type),
        fact("Created by", data.created_by || "—"),
        fact("Started", data.start_time || "—"),
        fact("Ended", data.end_time || "—"),
        fact("Took", duration(data.cost_time))),
      el("dl", { class: "facts stats", "aria-label": "Statistics" },
        fact("Total", total),
        fact("Succeeded", stats.success_count || 0, "SUCCESS"),
        fact("Failed", stats.failed_count || 0, "FAILED"),
        fact("Running", stats.running_count || 0, "RUNNING"),
        fact("Pending", stats.pending_count || 0, "PENDING"),
        fact("Ignored", stats.ignored_count || 0, "IGNORED")),
      bar,
      el("p", {}, el("a", { href: `/api/job/${data.job_id}/log/archive/`, download: `job-${data.job_id}-logs.tar.gz`, text: "Download every log (.tar.gz)" })));
  }

  function fact(label, value, status) {
    return el("div", { class: status ? `fact fact-${status}` : "fact" }, el("dt", { text: label }), el("dd", { text: String(value) }));
  }

  function renderInstances(section, jobId, data, filters) {
    const rows = (data.list || []).map((row) => {
      if (row.filter_host) {
        return el("tr", { class: "filtered" },
          el("td", { text: row.instance_id || "—" }), el("td", { text: row.ip || row.inner_ip || "—" }),
          el("td", { text: row.bk_host_id ?? "—" }), el("td", {}, statusBadge(row.status || "IGNORED")),
          el("td", { colspan: 4, text: row.status_display || row.msg || "" }));
      }
      const link = `#/task-list/${jobId}/log/${encodeInstance(row.instance_id)}`;
      return el("tr", { "data-instance-id": row.instance_id },
        el("td", {}, el("a", { href: link, "aria-label": `Log of ${row.ip || row.instance_id}`, text: row.instance_id })),
        el("td", { text: row.ip || "—" }),
        el("td", { text: row.bk_host_id ?? "—" }),
        el("td", {}, statusBadge(row.status)),
        el("td", { text: row.status_display || row.step || "" }),
        el("td", { text: row.start_time || "—" }),
        el("td", { text: duration(row.cost_time) }),
        el("td", { text: row.attempt ?? 1 }));
    });
    const pages = Math.max(1, Math.ceil((data.total || 0) / INSTANCE_PAGESIZE));
    const base = { status: filters.status, ip: filters.ip, instance_id: filters.instance_id };
    section.replaceChildren(
      el("div", { class: "table-wrap" }, el("table", { class: "grid", id: "instances" },
        el("caption", { text: `${data.total || 0} instance${data.total === 1 ? "" : "s"}` }),
        el("thead", {}, el("tr", {}, ["instance_id", "IP", "bk_host_id", "Status", "Step", "Started", "Took", "Attempt"].map((h) => el("th", { scope: "col", text: h })))),
        el("tbody", {}, rows.length ? rows : el("tr", {}, el("td", { colspan: 8, class: "muted", text: "No instance matches." }))))),
      pager(filters.page, pages, (p) => `#/task-list/${jobId}?${query({ ...base, page: p })}`));
  }

  function followJob(jobId, load, live) {
    let timer = null;
    let stopped = false;
    const refresh = () => {
      if (timer || stopped) return;
      timer = window.setTimeout(async () => {
        timer = null;
        try {
          const data = await load();
          if (!ACTIVE.has(data.status)) finish(data.status);
        } catch (exc) {
          live.textContent = `Could not refresh: ${exc.message}`;
        }
      }, 300);
    };
    const finish = (status) => {
      stopped = true;
      live.textContent = `Job ${status || "ended"}.`;
      announce(`Job ${jobId} ${status || "ended"}`);
    };
    live.textContent = "Live: updates as the hosts progress.";
    const poll = () => {
      const interval = window.setInterval(() => { if (stopped) window.clearInterval(interval); else refresh(); }, 2000);
      cleanup.push(() => window.clearInterval(interval));
    };
    if (!window.EventSource) { poll(); return; }
    const source = new EventSource(`/api/job/${jobId}/events/`);
    cleanup.push(() => { stopped = true; source.close(); if (timer) window.clearTimeout(timer); });
    source.addEventListener("instance", refresh);
    source.addEventListener("job", refresh);
    source.addEventListener("end", () => { source.close(); refresh(); });
    source.addEventListener("error", () => {
      if (source.readyState === EventSource.CLOSED && !stopped) poll(); // no stream here: poll instead
    });
  }

  // ---- one instance --------------------------------------------------------------------------------------

  async function renderInstance(route) {
    const { jobId, instanceId } = route;
    setTitle(`Job ${jobId} · ${instanceId}`);
    const view = new InstanceView(jobId, instanceId);
    cleanup.push(() => view.stop());
    await view.start();
  }

  class InstanceView {
    constructor(jobId, instanceId) {
      this.jobId = jobId;
      this.instanceId = instanceId;
      this.steps = []; // {step, status, start_time, finish_time, lines: [], node refs}
      this.cursor = "";
      this.finished = false;
      this.status = "";
      this.stopped = false;
      this.mode = "tail"; // tail: cursors + stream; seed: the seed answer, read again while running
      this.pattern = null; // plain-text search: highlighted in every line, live ones too
      this.hitSpans = new Map(); // regular-expression search: "step-line" -> the service's spans for that line
      this.follow = true;
      this.wrap = localStorage.getItem("nodeops.wrap") !== "off";
    }

    base() {
      return `/api/job/${this.jobId}/log`;
    }

    // the tail answer after this.cursor; an empty cursor means from the start
    tailUrl() {
      return `${this.base()}/tail/?${query({ instance_id: this.instanceId })}&cursor=${encodeURIComponent(this.cursor)}`;
    }

    async start() {
      const id = this.instanceId;
      const downloadHref = `${this.base()}/download/?${query({ instance_id: id })}`;
      this.heading = el("h1", { id: "instance-title" }, `Log of ${id}`);
      this.statusLine = el("p", { class: "instance-status" });
      this.live = el("p", { class: "live muted", role: "status", id: "live-status" });
      this.stepsBox = el("div", { class: `steps${this.wrap ? " wrap" : ""}`, id: "steps" });
      this.results = el("div", { class: "search-results", id: "search-results", "aria-live": "polite" });

      const wrapBox = el("input", { type: "checkbox", id: "wrap-lines", checked: this.wrap });
      wrapBox.addEventListener("change", () => {
        this.wrap = wrapBox.checked;
        localStorage.setItem("nodeops.wrap", this.wrap ? "on" : "off");
        this.stepsBox.classList.toggle("wrap", this.wrap);
      });
      const followBox = el("input", { type: "checkbox", id: "follow-log", checked: this.follow });
      followBox.addEventListener("change", () => { this.follow = followBox.checked; if (this.follow) this.scrollToEnd(); });
      const toolbar = el("div", { class: "toolbar", role: "group", "aria-label": "Log display" },
        el("a", { class: "button", id: "download-log", href: downloadHref, download: `job-${this.jobId}-${id.replace(/[^\w.-]+/g, "_")}.log`, text: "Download log" }),
        el("span", { class: "check" }, wrapBox, el("label", { for: "wrap-lines", text: "Wrap lines" })),
        el("span", { class: "check" }, followBox, el("label", { for: "follow-log", text: "Scroll with new lines" })),
        el("button", { type: "button", id: "expand-all", onclick: () => this.setOpen(true), text: "Expand all" }),
        el("button", { type: "button", id: "collapse-all", onclick: () => this.setOpen(false), text: "Collapse all" }));

      const q = el("input", { id: "search-q", name: "q", type: "search", required: true, spellcheck: "false" });
      const regex = el("input", { id: "search-regex", type: "checkbox" });
      const cased = el("input", { id: "search-case", type: "checkbox" });
      const search = el("form", { class: "filters search", role: "search", "aria-label": "Search this log" },
        el("label", { for: "search-q", text: "Search" }), q,
        el("span", { class: "check" }, regex, el("label", { for: "search-regex", text: "Regular expression" })),
        el("span", { class: "check" }, cased, el("label", { for: "search-case", text: "Match case" })),
        el("button", { type: "submit", text: "Search" }),
        el("button", { type: "button", id: "search-clear", text: "Clear", onclick: () => { q.value = ""; this.clearSearch(); q.focus(); } }));
      search.addEventListener("submit", (event) => {
        event.preventDefault();
        this.search(q.value, regex.checked, cased.checked);
      });

      main.replaceChildren(
        el("nav", { class: "breadcrumb", "aria-label": "Breadcrumb" },
          el("a", { href: "#/", text: "Jobs" }), " › ",
          el("a", { href: `#/task-list/${this.jobId}`, text: `Job ${this.jobId}` }), " › ", id),
        this.heading, this.statusLine, toolbar, search, this.results, this.live, this.stepsBox);
      this.describeHost();
      await this.loadAll();
      this.renderStatus();
      if (!this.finished) this.followLive();
      else this.live.textContent = "This instance has finished; its log is complete.";
    }

    async describeHost() {
      try {
        const data = await api(`/api/job/${this.jobId}/details/`, {
          method: "POST", body: { pagesize: 1, conditions: [{ key: "instance_id", value: [this.instanceId] }] },
        });
        const row = (data.list || [])[0];
        if (row && row.ip) this.heading.textContent = `Log of ${row.ip} (${this.instanceId})`;
        this.jobType = data.job_type;
        this.attempt = row ? row.attempt : undefined;
        this.renderStatus();
      } catch (exc) {
        // the heading keeps the instance_id; the log below says everything else
      }
    }

    renderStatus() {
      if (!this.status) return;
      this.statusLine.replaceChildren(
        "Status ", statusBadge(this.status),
        this.attempt ? ` · attempt ${this.attempt}` : "",
        this.jobType ? ` · ${this.jobType}` : "");
    }

    // The first read: every page of the tail answer from the start (or the seed answer if tails are not served).
    async loadAll() {
      for (let page = 0; page < MAX_TAIL_PAGES; page += 1) {
        let data;
        try {
          data = await api(this.tailUrl());
        } catch (exc) {
          if (exc instanceof ApiError && MISSING_API_CODES.has(exc.code) && page === 0) {
            this.mode = "seed";
            await this.loadSeed();
            return;
          }
          throw exc;
        }
        const added = this.mergeTail(data);
        if (!added) break;
      }
    }

    async loadSeed() {
      const steps = await api(`${this.base()}/?${query({ instance_id: this.instanceId })}`);
      const statuses = steps.map((s) => s.status);
      this.status = statuses.every((s) => s === "SUCCESS") ? "SUCCESS"
        : statuses.includes("FAILED") ? "FAILED" : statuses.includes("RUNNING") ? "RUNNING" : "PENDING";
      this.finished = !ACTIVE.has(this.status);
      steps.forEach((s, index) => {
        const step = this.ensureStep(index, s);
        const lines = s.log ? s.log.split("\n") : [];
        const fresh = lines.slice(step.lines.length);
        this.updateStep(index, s);
        this.appendLines(index, fresh);
      });
    }

    // Merge a tail answer; returns how many characters of log it added.
    mergeTail(data) {
      let added = 0;
      this.status = data.status || this.status;
      this.finished = Boolean(data.finished);
      if (data.cursor) this.cursor = data.cursor;
      (data.steps || []).forEach((s, index) => {
        this.ensureStep(index, s);
        this.updateStep(index, s);
        if (s.log) {
          added += s.log.length;
          this.appendText(index, s.log);
        }
      });
      return added;
    }

    ensureStep(index, s) {
      while (this.steps.length <= index) {
        const i = this.steps.length;
        const summary = el("summary", {});
        const log = el("div", {
          class: "log", role: "log", "aria-live": "polite", "aria-relevant": "additions",
          "aria-label": `Log of step ${i + 1}`, id: `log-${i}`,
        });
        const details = el("details", { class: "step", id: `step-${i}`, "data-index": i }, summary, log);
        this.stepsBox.append(details);
        this.steps.push({ step: "", status: "", start_time: null, finish_time: null, lines: [], details, summary, log, opened: false });
      }
      const step = this.steps[index];
      if (!step.step && s && s.step) step.step = s.step;
      return step;
    }

    updateStep(index, s) {
      const step = this.ensureStep(index, s);
      const changed = step.status !== s.status || step.start_time !== s.start_time || step.finish_time !== s.finish_time;
      step.step = s.step || step.step;
      step.status = s.status || step.status;
      step.start_time = s.start_time ?? step.start_time;
      step.finish_time = s.finish_time ?? step.finish_time;
      if (changed || !step.summary.childNodes.length) this.renderSummary(index);
      if (!step.opened && (step.status === "RUNNING" || step.status === "FAILED" || step.lines.length)) {
        step.details.open = true;
        step.opened = true;
      }
    }

    renderSummary(index) {
      const step = this.steps[index];
      const took = stepSeconds(step);
      step.summary.replaceChildren(
        el("span", { class: "step-no", text: `${index + 1}.` }), " ",
        el("span", { class: "step-name", text: step.step }), " ",
        statusBadge(step.status || "PENDING"), " ",
        el("span", { class: "step-times muted" },
          step.start_time ? `${step.start_time} → ${step.finish_time || "…"}` : "not started",
          took !== null ? ` (${duration(took)})` : ""));
      step.log.setAttribute("aria-label", `Log of step ${index + 1}, ${step.step}`);
    }

    // A step's text in a tail answer: whole lines joined by newlines, none before or after.
    appendText(index, text) {
      this.appendLines(index, text.split("\n"));
    }

    appendLines(index, lines) {
      if (!lines.length) return;
      const step = this.steps[index];
      const fragment = document.createDocumentFragment();
      for (const line of lines) {
        step.lines.push(line);
        const no = step.lines.length;
        const node = el("div", { class: "line", id: `l-${index}-${no}`, "data-line": no });
        this.fillLine(node, line);
        fragment.append(node);
      }
      step.log.append(fragment);
      if (!step.opened) {
        step.details.open = true;
        step.opened = true;
      }
      if (this.follow) this.scrollToEnd();
    }

    fillLine(node, line) {
      const level = levelOf(line);
      node.className = `line${level ? ` lvl-${level}` : ""}${node.classList.contains("target") ? " target" : ""}`;
      node.replaceChildren(...this.highlighted(line, node.id.slice(2)));
    }

    highlighted(line, key) {
      const served = this.hitSpans.get(key);
      if (served) return marked(line, served.map(([start, end]) => [unitOffset(line, start), unitOffset(line, end)]));
      if (!this.pattern) return [line];
      const spans = [];
      this.pattern.lastIndex = 0;
      let match;
      while ((match = this.pattern.exec(line)) !== null) {
        if (match[0] === "") { this.pattern.lastIndex += 1; continue; }
        spans.push([match.index, match.index + match[0].length]);
      }
      return marked(line, spans);
    }

    rehighlight() {
      let count = 0;
      this.steps.forEach((step, index) => {
        step.log.querySelectorAll(".line").forEach((node) => {
          const no = Number(node.dataset.line);
          this.fillLine(node, step.lines[no - 1]);
          count += node.querySelectorAll("mark").length;
        });
        if ((this.pattern || this.hitSpans.size) && step.log.querySelector("mark")) step.details.open = true;
      });
      return count;
    }

    scrollToEnd() {
      const running = this.steps.findIndex((s) => s.status === "RUNNING");
      const step = this.steps[running >= 0 ? running : this.steps.length - 1];
      if (!step) return;
      const last = step.log.lastElementChild;
      if (last && this.follow && !this.finished) last.scrollIntoView({ block: "end" });
    }

    setOpen(open) {
      for (const step of this.steps) {
        step.details.open = open;
        step.opened = true;
      }
    }

    // ---- following ----

    followLive() {
      if (this.mode === "seed") { this.poll(); return; }
      if (!window.EventSource) { this.poll(); return; }
      this.live.textContent = "Following live…";
      const url = `${this.base()}/stream/?${query({ instance_id: this.instanceId })}&cursor=${encodeURIComponent(this.cursor)}`;
      const source = new EventSource(url);
      this.source = source;
      source.addEventListener("line", (event) => {
        const data = JSON.parse(event.data);
        if (event.lastEventId) this.cursor = event.lastEventId;
        this.ensureStep(data.step_index, { step: data.step });
        this.appendLines(data.step_index, [data.text]);
      });
      source.addEventListener("step", (event) => {
        const data = JSON.parse(event.data);
        const index = this.stepIndexOf(data);
        if (index >= 0) this.updateStep(index, data);
        if (data.status === "RUNNING") this.status = "RUNNING";
        this.renderStatus();
      });
      source.addEventListener("end", async (event) => {
        source.close();
        let data = {};
        try { data = JSON.parse(event.data || "{}"); } catch (exc) { /* keep the last status */ }
        if (data.status) this.status = data.status;
        await this.catchUp();
        this.end();
      });
      source.addEventListener("error", () => {
        if (source.readyState === EventSource.CLOSED && !this.stopped && !this.finished) {
          this.live.textContent = "Following live (polling)…";
          this.poll();
        }
      });
    }

    stepIndexOf(data) {
      if (Number.isInteger(data.step_index)) return data.step_index;
      const candidates = this.steps.map((s, i) => (s.step === data.step ? i : -1)).filter((i) => i >= 0);
      const open = candidates.find((i) => this.steps[i].status !== "SUCCESS" && this.steps[i].status !== "FAILED");
      return open ?? candidates[candidates.length - 1] ?? -1;
    }

    async catchUp() {
      if (this.mode === "seed") { await this.loadSeed(); return; }
      try {
        for (let page = 0; page < MAX_TAIL_PAGES; page += 1) {
          const data = await api(this.tailUrl());
          if (!this.mergeTail(data)) break;
        }
      } catch (exc) {
        this.live.textContent = `Could not read the log: ${exc.message}`;
      }
    }

    poll() {
      const tick = async () => {
        if (this.stopped) return;
        await this.catchUp();
        this.renderStatus();
        if (this.finished) this.end();
        else this.timer = window.setTimeout(tick, POLL_MS);
      };
      this.timer = window.setTimeout(tick, POLL_MS);
    }

    end() {
      this.finished = true;
      this.renderStatus();
      this.live.textContent = `Finished: ${this.status}. The log is complete.`;
      announce(`Instance finished: ${this.status}`);
    }

    stop() {
      this.stopped = true;
      if (this.source) this.source.close();
      if (this.timer) window.clearTimeout(this.timer);
    }

    // ---- search ----

    clearSearch() {
      this.pattern = null;
      this.hitSpans = new Map();
      this.rehighlight();
      this.results.replaceChildren();
    }

    async search(q, regex, cased) {
      if (!q) { this.clearSearch(); return; }
      // A regular expression is the service's (RE2 syntax, linear time) and runs only there: the browser's
      // engine has another syntax and can backtrack without end, so a regular expression highlights the lines
      // the service found, with its spans. Plain text is highlighted here, in every line, live ones too.
      this.pattern = regex ? null : new RegExp(escapeRegExp(q), cased ? "g" : "gi");
      this.hitSpans = new Map();
      let shown = this.rehighlight();
      const summary = el("p", { id: "search-summary", text: `${shown} match${shown === 1 ? "" : "es"} highlighted in the log below.` });
      this.results.replaceChildren(summary);
      let data;
      try {
        data = await api(`${this.base()}/search/?${query({ q, instance_id: this.instanceId, regex: regex ? "true" : "", case: cased ? "true" : "", pagesize: 100 })}`);
      } catch (exc) {
        if (exc instanceof ApiError && exc.code === 3800001) {
          this.clearSearch();
          this.results.append(el("p", { class: "error", role: "alert", text: exc.message }));
        }
        return;
      }
      if (regex) {
        for (const hit of data.list || []) this.hitSpans.set(`${hit.step_index}-${hit.line_no}`, hit.spans || []);
        shown = this.rehighlight();
      }
      const items = (data.list || []).map((hit) => {
        const text = marked(hit.text, (hit.spans || []).map(([start, end]) => [unitOffset(hit.text, start), unitOffset(hit.text, end)]));
        return el("li", {},
          el("button", { type: "button", class: "link-button", onclick: () => this.jumpTo(hit.step_index, hit.line_no), text: `${hit.step} · line ${hit.line_no}` }),
          " ", el("code", { class: `hit${hit.level ? ` lvl-${hit.level}` : ""}` }, text));
      });
      const lines = `${data.total} matching line${data.total === 1 ? "" : "s"}`;
      const counted = data.complete === false ? `at least ${lines} (the search stopped at its time limit)` : lines;
      summary.textContent = `${counted} in this instance's log; ${shown} match${shown === 1 ? "" : "es"} highlighted below.`;
      if (items.length) this.results.append(el("ol", { class: "hits", "aria-label": "Matching lines" }, items));
    }

    jumpTo(stepIndex, lineNo) {
      const step = this.steps[stepIndex];
      if (!step) return;
      step.details.open = true;
      const node = document.getElementById(`l-${stepIndex}-${lineNo}`);
      if (!node) return;
      this.follow = false;
      const followBox = document.getElementById("follow-log");
      if (followBox) followBox.checked = false;
      node.setAttribute("tabindex", "-1");
      node.classList.add("target");
      node.scrollIntoView({ block: "center" });
      node.focus({ preventScroll: true });
    }
  }

  // ---- start ---------------------------------------------------------------------------------------------

  document.getElementById("sign-out").addEventListener("click", signOut);
  document.getElementById("skip-link").addEventListener("click", (event) => {
    event.preventDefault();
    main.focus();
  });
  const who = localStorage.getItem("nodeops.username");
  if (who) document.getElementById("who-name").textContent = `Signed in as ${who}`;
  window.addEventListener("hashchange", render);
  render();
})();
