// The nodeops log viewer: hash routes over the job and log APIs, no framework and no build step.
//   #/                                      jobs (job_list), with a status filter and paging
//   #/task-list/{job_id}                    one job (details_job), kept current by /api/job/{id}/events/
//   #/task-list/{job_id}/log/{instance_id}  one instance's steps and logs, followed live while it runs
//   #/hosts                                 hosts (inventory host search), paged, chosen for an operate job
//   #/install                               an install form (install_job)
//   #/signin                                sign in with a bk_token (POST /web/session/, an HttpOnly cookie)
// Every text from the service is put into the page as text (never as HTML): logs may hold markup.
// Every word of the page comes from i18n.js (t): zh or en, as the blueking_language cookie or the browser says.
// Actions (retry, revoke, operate, install) ask first in a dialog; the API decides who may do them, and its
// refusal is shown as it answers it.
"use strict";

(() => {
  const { t } = window.NodeopsI18n;
  const AUTH_CODES = new Set([1306000, 1306403, 1306406]);
  const MISSING_API_CODES = new Set([3800404, 3800405]);
  const ACTIVE = new Set(["PENDING", "RUNNING"]);
  const STATUSES = ["PENDING", "RUNNING", "SUCCESS", "FAILED", "PART_FAILED", "TERMINATED", "IGNORED", "FILTERED", "REMOVED"];
  const STATUS_ICON = {
    PENDING: "○", RUNNING: "◔", SUCCESS: "✓", FAILED: "✗", PART_FAILED: "◑",
    TERMINATED: "■", IGNORED: "–", FILTERED: "–", REMOVED: "–",
  };
  // i18n.js has each one in Chinese (Node Manager's own display names)
  const STATUS_TEXT = {
    PENDING: "Pending", RUNNING: "Running", SUCCESS: "Succeeded", FAILED: "Failed", PART_FAILED: "Partly failed",
    TERMINATED: "Terminated", REMOVED: "Removed", FILTERED: "Filtered", IGNORED: "Ignored",
  };
  // operate_job's agent operations the viewer offers (the API has the proxies' too)
  const OPERATIONS = [
    ["RESTART_AGENT", "Restart"], ["RELOAD_AGENT", "Reload"], ["UPGRADE_AGENT", "Upgrade"], ["UNINSTALL_AGENT", "Uninstall"],
  ];
  const JOB_PAGESIZE = 20;
  const INSTANCE_PAGESIZE = 20;
  const HOST_PAGESIZE = 20;
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
      title: STATUS_TEXT[status] ? t(STATUS_TEXT[status]) : status,
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
    if (s < 60) return t("{s} s", { s });
    const m = Math.floor(s / 60);
    if (m < 60) return t("{m} min {s} s", { m, s: s % 60 });
    return t("{h} h {m} min", { h: Math.floor(m / 60), m: m % 60 });
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

  // A path with the viewer's language (bk_language), so step names and status displays come back in it.
  function withLanguage(path) {
    return `${path}${path.includes("?") ? "&" : "?"}bk_language=${encodeURIComponent(window.NodeopsI18n.bkLanguage())}`;
  }

  async function api(path, options) {
    const opts = options || {};
    const init = { method: opts.method || "GET", credentials: "same-origin", headers: { "X-Nodeops-Web": "1" } };
    if (opts.body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(opts.body);
    }
    let response;
    try {
      response = await fetch(withLanguage(path), init);
    } catch (exc) {
      throw new ApiError(0, t("The service did not answer ({reason}). Is it running?", { reason: exc.message }), 0);
    }
    let answer = null;
    try {
      answer = await response.json();
    } catch (exc) {
      throw new ApiError(3800000 + response.status, t("{path} answered HTTP {status} without JSON", { path, status: response.status }), response.status);
    }
    if (!answer || typeof answer !== "object" || !("result" in answer)) {
      const code = response.status === 404 ? 3800404 : 3800000 + response.status;
      throw new ApiError(code, t("{path} answered HTTP {status}", { path, status: response.status }), response.status);
    }
    if (!answer.result) throw new ApiError(answer.code, answer.message || t("error {code}", { code: answer.code }), response.status);
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
      el("strong", { text: exc instanceof ApiError && exc.code ? t("Error {code}: ", { code: exc.code }) : t("Error: ") }),
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
    if (parts[0] === "hosts") return { view: "hosts", params };
    if (parts[0] === "install") return { view: "install", params };
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

  // Each render gets the next navigation number; one whose number is no longer the latest was left (the route
  // changed while it awaited the service) and must not touch the page, nor leave a stream or a timer running.
  let navigation = 0;

  class Superseded extends Error {}

  function isCurrent(route) {
    return route.navigation === navigation;
  }

  // Call after each await of a render: throws Superseded (dropped by render) once the route has changed.
  function still(route) {
    if (!isCurrent(route)) throw new Superseded("the route changed");
  }

  // What the view must stop when it is left; stopped at once if it has been left already.
  function onLeave(route, stop) {
    if (isCurrent(route)) cleanup.push(stop);
    else stop();
  }

  async function render() {
    if (location.hash && !location.hash.startsWith("#/")) return; // an in-page anchor, not a route
    stopView();
    const route = parseRoute();
    navigation += 1;
    route.navigation = navigation;
    document.getElementById("who").hidden = route.view === "signin";
    main.replaceChildren(el("p", { class: "loading", text: t("Loading…") }));
    try {
      if (route.view === "signin") await renderSignin(route);
      else if (route.view === "job") await renderJob(route);
      else if (route.view === "instance") await renderInstance(route);
      else if (route.view === "hosts") await renderHosts(route);
      else if (route.view === "install") await renderInstall(route);
      else await renderJobs(route);
    } catch (exc) {
      if (exc instanceof Superseded || !isCurrent(route)) return;
      main.replaceChildren();
      showError(exc);
    }
    if (!isCurrent(route)) return;
    showFlash();
    if (document.activeElement === document.body || !main.contains(document.activeElement)) focusHeading();
  }

  // ---- sign in -------------------------------------------------------------------------------------------

  async function renderSignin(route) {
    setTitle(t("Sign in"));
    const input = el("input", {
      id: "bk-token", name: "bk_token", type: "password", autocomplete: "off", required: true, spellcheck: "false",
      "aria-describedby": "bk-token-help",
    });
    const message = el("div", { id: "signin-message", role: "alert" });
    const form = el("form", { class: "signin card", "aria-labelledby": "signin-title" },
      el("h1", { id: "signin-title", text: t("Sign in to nodeops") }),
      el("label", { for: "bk-token", text: "bk_token" }),
      input,
      el("p", { id: "bk-token-help", class: "help" },
        t("A ticket from "), el("code", { text: "nodeops token issue NAME" }), t(". It is kept in an HttpOnly cookie.")),
      el("button", { type: "submit", class: "primary", text: t("Sign in") }),
      message);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      message.replaceChildren();
      try {
        const data = await api("/web/session/", { method: "POST", body: { bk_token: input.value.trim() } });
        const name = data && typeof data === "object" ? data.username || data.bk_username || "" : "";
        if (name) localStorage.setItem("nodeops.username", name);
        else localStorage.removeItem("nodeops.username");
        showWho(name);
        input.value = "";
        const next = sessionStorage.getItem("nodeops.after-signin") || "#/";
        sessionStorage.removeItem("nodeops.after-signin");
        location.hash = next === "#/signin" ? "#/" : next;
      } catch (exc) {
        message.replaceChildren(el("p", { class: "error", text: t("Sign-in failed: {reason}", { reason: exc.message }) }));
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
    still(route);
    if (current === null) {
      form.requestSubmit();
      return;
    }
    // A link can carry anyone's token: followed unseen, it would swap the operator's session for its user's,
    // and what they do next would be done, and shown, as that user. So it asks.
    setTitle(t("Switch user?"));
    const keep = el("button", {
      type: "button", text: current ? t("Stay signed in as {name}", { name: current }) : t("Stay signed in"),
      onclick: () => { input.value = ""; location.hash = "#/"; },
    });
    form.querySelector("button[type=submit]").textContent = t("Sign in with the link's token");
    const heading = form.querySelector("h1");
    heading.textContent = t("Switch user?");
    heading.after(el("p", { class: "error", id: "signin-switch", role: "alert" },
      current ? t("You are already signed in as {name}.", { name: current }) : t("You are already signed in."),
      " ", t("This link signs in with the bk_token it carries, which may be someone else's: what you do next would be done as its user. Sign in with it only if you asked for this link.")));
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

  function showWho(name) {
    document.getElementById("who-name").textContent = name ? t("Signed in as {name}", { name }) : "";
  }

  // ---- jobs ----------------------------------------------------------------------------------------------

  async function renderJobs(route) {
    setTitle(t("Jobs"));
    const page = Math.max(1, Number(route.params.get("page")) || 1);
    const status = route.params.get("status") || "";
    const body = { page, pagesize: JOB_PAGESIZE, sort: { head: "id", sort_type: "DEC" } };
    if (status) body.status = [status];
    const data = await api("/api/job/job_list/", { method: "POST", body });
    still(route);
    const pages = Math.max(1, Math.ceil((data.total || 0) / JOB_PAGESIZE));

    const select = el("select", { id: "job-status", name: "status" },
      el("option", { value: "", text: t("Any status") }),
      STATUSES.slice(0, 6).map((s) => el("option", { value: s, selected: s === status, text: `${s} (${t(STATUS_TEXT[s])})` })));
    const filter = el("form", { class: "filters", role: "search", "aria-label": t("Filter jobs") },
      el("label", { for: "job-status", text: t("Status") }), select,
      el("button", { type: "submit", text: t("Filter") }));
    filter.addEventListener("submit", (event) => {
      event.preventDefault();
      location.hash = `#/?${query({ status: select.value, page: 1 })}`;
    });

    const rows = (data.list || []).map((job) => {
      const stats = job.statistics || {};
      return el("tr", {},
        el("td", {}, el("a", { href: `#/task-list/${job.id}`, text: t("Job {id}", { id: job.id }) })),
        el("td", {}, job.job_type_display ? `${job.job_type_display} ` : "", el("span", { class: "muted", text: job.job_type })),
        el("td", {}, statusBadge(job.status)),
        el("td", {}, statsText(stats)),
        el("td", { text: job.created_by || "" }),
        el("td", { text: job.start_time || "—" }),
        el("td", { text: duration(job.cost_time) }));
    });
    const table = el("table", { class: "grid" },
      el("caption", { text: `${t(data.total === 1 ? "{n} job" : "{n} jobs", { n: data.total || 0 })}${status ? t(" with status {status}", { status }) : ""}` }),
      el("thead", {}, el("tr", {}, ["Job", "Type", "Status", "Hosts", "Created by", "Started", "Took"].map((h) => el("th", { scope: "col", text: t(h) })))),
      el("tbody", {}, rows.length ? rows : el("tr", {}, el("td", { colspan: 7, class: "muted", text: t("No job matches.") }))));
    main.replaceChildren(
      el("h1", { text: t("Jobs") }),
      filter,
      el("div", { class: "table-wrap" }, table),
      pager(page, pages, (p) => `#/?${query({ status, page: p })}`));
  }

  function statsText(stats) {
    const parts = [];
    for (const [key, label] of [["success_count", "{n} ok"], ["failed_count", "{n} failed"], ["running_count", "{n} running"], ["pending_count", "{n} pending"], ["ignored_count", "{n} ignored"]]) {
      if (stats[key]) parts.push(t(label, { n: stats[key] }));
    }
    return `${t("{n} total", { n: stats.total_count || 0 })}${parts.length ? ` · ${parts.join(", ")}` : ""}`;
  }

  function pager(page, pages, href) {
    return el("nav", { class: "pager", "aria-label": t("Pages") },
      page > 1 ? el("a", { href: href(page - 1), rel: "prev", text: t("← Previous") }) : el("span", { class: "muted", text: t("← Previous") }),
      el("span", { text: ` ${t("Page {page} of {pages}", { page, pages })} ` }),
      page < pages ? el("a", { href: href(page + 1), rel: "next", text: t("Next →") }) : el("span", { class: "muted", text: t("Next →") }));
  }

  // ---- actions -------------------------------------------------------------------------------------------

  let flash = null; // a message for the next page drawn (an action's outcome, then a navigation)

  function showFlash() {
    if (!flash) return;
    main.prepend(el("p", { class: "notice", role: "status", id: "flash", text: flash }));
    flash = null;
  }

  function errorText(exc) {
    return `${exc instanceof ApiError && exc.code ? t("Error {code}: ", { code: exc.code }) : t("Error: ")}${exc.message || String(exc)}`;
  }

  // Ask before an action: a modal <dialog> (focus moves into it, Esc or Cancel says no), then focus back where it
  // was. Resolves true when confirmed. Leaving the page answers no.
  function confirmDialog({ title, text, confirm, danger }) {
    return new Promise((resolve) => {
      const opener = document.activeElement;
      const cancel = el("button", { type: "button", id: "confirm-cancel", text: t("Cancel") });
      const ok = el("button", { type: "button", id: "confirm-ok", class: danger ? "danger" : "primary", text: confirm });
      const dialog = el("dialog", { class: "confirm card", "aria-labelledby": "confirm-title", "aria-describedby": "confirm-text" },
        el("h2", { id: "confirm-title", text: title }),
        el("div", { id: "confirm-text" }, [text].flat().map((part) => el("p", { text: part }))),
        el("div", { class: "dialog-buttons" }, cancel, ok));
      let answered = false;
      const finish = (yes) => {
        if (answered) return;
        answered = true;
        if (dialog.open) dialog.close();
        dialog.remove();
        if (opener && opener.isConnected && typeof opener.focus === "function") opener.focus();
        resolve(yes);
      };
      cancel.addEventListener("click", () => finish(false));
      ok.addEventListener("click", () => finish(true));
      dialog.addEventListener("cancel", (event) => { event.preventDefault(); finish(false); }); // Esc
      dialog.addEventListener("close", () => finish(false));
      cleanup.push(() => finish(false));
      document.body.append(dialog);
      dialog.showModal();
      cancel.focus(); // the safe answer first: Enter alone does nothing harmful
    });
  }

  // Confirm, call the API, then ``done`` with its data; a refusal is shown in ``message`` as the API words it.
  // An answer that comes after the page was left is only announced: it does not take the reader elsewhere.
  async function act({ title, text, confirm, danger, call, done, message, button }) {
    if (!(await confirmDialog({ title, text, confirm, danger }))) return;
    const asked = navigation;
    if (button) button.disabled = true;
    message.replaceChildren();
    try {
      const data = await call();
      if (asked !== navigation) {
        announce(t("{title} Done.", { title }));
        return;
      }
      await done(data);
    } catch (exc) {
      if (exc instanceof ApiError && AUTH_CODES.has(exc.code)) { showError(exc); return; }
      message.replaceChildren(el("p", { class: "error", role: "alert", text: errorText(exc) }));
    } finally {
      if (button) button.disabled = false;
    }
  }

  // A button that runs ``act`` with ``options`` when pressed (and is disabled while it runs).
  function actionButton(attrs, options) {
    const button = el("button", { type: "button", ...attrs });
    button.addEventListener("click", () => act({ ...options(), button }));
    return button;
  }

  function actionMessage(id) {
    return el("div", { class: "action-message", id, "aria-live": "polite" });
  }

  // The operate form under a list of hosts with checkboxes: ``chosen`` (bk_host_id -> label) is the selection.
  function operateForm(prefix, chosen, message) {
    const type = el("select", { id: `${prefix}-type`, name: "job_type" },
      OPERATIONS.map(([value, label]) => el("option", { value, text: `${t(label)} (${value})` })));
    const count = el("span", { class: "muted", id: `${prefix}-count`, role: "status" });
    const start = el("button", { type: "submit", class: "primary", text: t("Start on the chosen hosts") });
    const form = el("form", { class: "filters operate", "aria-label": t("Operate on the chosen hosts") },
      el("label", { for: `${prefix}-type`, text: t("Operation") }), type, start, count);
    form.update = () => {
      count.textContent = t(chosen.size === 1 ? "{n} host chosen" : "{n} hosts chosen", { n: chosen.size });
    };
    form.update();
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      if (!chosen.size) {
        message.replaceChildren(el("p", { class: "error", role: "alert", text: t("Choose at least one host with its checkbox first.") }));
        return;
      }
      const label = t(OPERATIONS.find(([value]) => value === type.value)[1]);
      const names = [...chosen.values()];
      act({
        title: t("{operation} the agent of {n} hosts?", { operation: label, n: names.length }),
        text: [t("A new {job_type} job starts on: {hosts}", { job_type: type.value, hosts: names.join(", ") })],
        confirm: t("Start {operation}", { operation: label }),
        danger: type.value === "UNINSTALL_AGENT",
        message,
        button: start,
        call: () => api("/api/job/operate/", { method: "POST", body: { job_type: type.value, bk_host_id: [...chosen.keys()] } }),
        done: (data) => {
          const left = (data.ip_filter || []).length;
          flash = left
            ? t("Job {id} started; {n} hosts were left out (see the job).", { id: data.job_id, n: left })
            : t("Job {id} started.", { id: data.job_id });
          chosen.clear();
          location.hash = `#/task-list/${data.job_id}`;
        },
      });
    });
    return form;
  }

  // A checkbox choosing one host (bk_host_id) into ``chosen``.
  function chooseBox(chosen, hostId, label, form) {
    const box = el("input", { type: "checkbox", class: "choose", "aria-label": t("Choose {host}", { host: label }), checked: chosen.has(hostId) });
    box.addEventListener("change", () => {
      if (box.checked) chosen.set(hostId, label);
      else chosen.delete(hostId);
      form.update();
    });
    return box;
  }

  // The header checkbox choosing every row of the table it heads.
  function chooseAllBox(table, form) {
    const all = el("input", { type: "checkbox", class: "choose-all", "aria-label": t("Choose every host of this page") });
    all.addEventListener("change", () => {
      for (const box of table.querySelectorAll("input.choose")) {
        if (box.checked !== all.checked) {
          box.checked = all.checked;
          box.dispatchEvent(new Event("change"));
        }
      }
      form.update();
    });
    return all;
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
    setTitle(t("Job {id}", { id: jobId }));
    const summary = el("section", { class: "card job-summary", "aria-labelledby": "job-title" });
    const message = actionMessage("action-message");
    const actions = jobActions(route, jobId, message);
    const instances = el("section", { "aria-labelledby": "instances-title" });
    const live = el("p", { class: "live muted", role: "status" });
    const filterForm = jobFilterForm(jobId, filters);
    const chosen = new Map(); // bk_host_id -> ip, for an operate job; kept while the page refreshes
    const operate = operateForm("job-operate", chosen, message);
    main.replaceChildren(
      el("nav", { class: "breadcrumb", "aria-label": t("Breadcrumb") }, el("a", { href: "#/", text: t("Jobs") }), " › ", t("Job {id}", { id: jobId })),
      summary, actions, message, live,
      el("h2", { id: "instances-title", text: t("Instances") }),
      filterForm, operate, instances);
    const timeline = el("section", { class: "card", id: "timeline" });
    live.after(timeline); // a job at a glance (timeline.js), stopped with the view
    onLeave(route, window.NodeopsTimeline.mount(timeline, jobId, { api }));

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
      still(route);
      latest = data;
      renderJobSummary(summary, data);
      actions.update(data);
      renderInstances(instances, jobId, data, filters, { route, chosen, operate, message });
      return data;
    };
    const first = await load();
    still(route);
    focusHeading();
    if (ACTIVE.has(first.status)) followJob(route, jobId, load, live);
    else live.textContent = t("Job {status}.", { status: first.status });
    return latest;
  }

  // The job's own actions: retry its failed hosts, revoke it. Shown when the job's state allows them; the API
  // decides whether the caller may.
  function jobActions(route, jobId, message) {
    let failed = 0;
    const retry = actionButton({ id: "retry-job", text: t("Retry the failed hosts"), hidden: true }, () => ({
      title: t("Retry the failed hosts of job {id}?", { id: jobId }),
      text: t("The {n} failed hosts run again as a new attempt; the others are left as they are.", { n: failed }),
      confirm: t("Retry"),
      message,
      call: () => api(`/api/job/${jobId}/retry/`, { method: "POST", body: {} }),
      done: () => { flash = t("Retry started: the failed hosts run again."); rerender(route); },
    }));
    const revoke = actionButton({ id: "revoke-job", class: "danger", text: t("Revoke the job"), hidden: true }, () => ({
      title: t("Revoke job {id}?", { id: jobId }),
      text: t("Its pending and running hosts stop, and the job ends TERMINATED."),
      confirm: t("Revoke"),
      danger: true,
      message,
      call: () => api(`/api/job/${jobId}/revoke/`, { method: "POST", body: {} }),
      done: () => { flash = t("Job {id} revoked.", { id: jobId }); rerender(route); },
    }));
    const group = el("div", { class: "toolbar actions", role: "group", "aria-label": t("Job actions") }, retry, revoke);
    group.update = (data) => {
      failed = (data.statistics || {}).failed_count || 0;
      retry.hidden = !failed;
      revoke.hidden = !ACTIVE.has(data.status);
      group.hidden = retry.hidden && revoke.hidden;
    };
    return group;
  }

  // Draw the current route again (after an action changed what it shows), if it is still the current one.
  function rerender(route) {
    if (isCurrent(route)) render();
  }

  // One instance's actions: retry it from its failed step, revoke it.
  function instanceActions(route, jobId, row, message) {
    const name = row.ip || row.instance_id;
    const buttons = [];
    if (row.status === "FAILED") {
      const label = t("Retry {host} from its failed step", { host: name });
      buttons.push(actionButton({ class: "retry-node", "aria-label": label, text: t("Retry from the failed step") }, () => ({
        title: t("Retry {host} from its failed step?", { host: name }),
        text: t("A new attempt of this host starts at the step that failed; the steps before it are kept."),
        confirm: t("Retry"),
        message,
        call: () => api(`/api/job/${jobId}/retry_node/`, { method: "POST", body: { instance_id: row.instance_id } }),
        done: (data) => {
          flash = t("{host} runs again from {step}.", { host: name, step: data.retry_node_name || "" });
          rerender(route);
        },
      })));
    }
    if (ACTIVE.has(row.status)) {
      const label = t("Revoke {host}", { host: name });
      buttons.push(actionButton({ class: "revoke-node danger", "aria-label": label, text: t("Revoke") }, () => ({
        title: t("Revoke {host}?", { host: name }),
        text: t("This host stops; the job's other hosts go on."),
        confirm: t("Revoke"),
        danger: true,
        message,
        call: () => api(`/api/job/${jobId}/revoke/`, { method: "POST", body: { instance_id_list: [row.instance_id] } }),
        done: () => { flash = t("{host} revoked.", { host: name }); rerender(route); },
      })));
    }
    return buttons;
  }

  function jobFilterForm(jobId, filters) {
    const status = el("select", { id: "f-status", name: "status" },
      el("option", { value: "", text: t("Any status") }),
      ["PENDING", "RUNNING", "SUCCESS", "FAILED"].map((s) => el("option", { value: s, selected: s === filters.status, text: s })));
    const ip = el("input", { id: "f-ip", name: "ip", type: "search", value: filters.ip, placeholder: "127.0.0", inputmode: "decimal" });
    const inst = el("input", { id: "f-instance", name: "instance_id", type: "search", value: filters.instance_id, placeholder: "host|instance|host|1" });
    const form = el("form", { class: "filters", role: "search", "aria-label": t("Filter instances") },
      el("label", { for: "f-status", text: t("Status") }), status,
      el("label", { for: "f-ip", text: "IP" }), ip,
      el("label", { for: "f-instance", text: "instance_id" }), inst,
      el("button", { type: "submit", text: t("Filter") }),
      el("button", { type: "reset", text: t("Clear") }));
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
      el("h1", { id: "job-title" }, `${t("Job {id}", { id: data.job_id })} · ${data.job_type_display || data.job_type} `, statusBadge(data.status)),
      el("dl", { class: "facts" },
        fact(t("Type"), data.job_type),
        fact(t("Created by"), data.created_by || "—"),
        fact(t("Started"), data.start_time || "—"),
        fact(t("Ended"), data.end_time || "—"),
        fact(t("Took"), duration(data.cost_time))),
      el("dl", { class: "facts stats", "aria-label": t("Statistics") },
        fact(t("Total"), total),
        fact(t("Succeeded"), stats.success_count || 0, "SUCCESS"),
        fact(t("Failed"), stats.failed_count || 0, "FAILED"),
        fact(t("Running"), stats.running_count || 0, "RUNNING"),
        fact(t("Pending"), stats.pending_count || 0, "PENDING"),
        fact(t("Ignored"), stats.ignored_count || 0, "IGNORED")),
      bar,
      el("p", {}, el("a", { href: `/api/job/${data.job_id}/log/archive/`, download: `job-${data.job_id}-logs.tar.gz`, text: t("Download every log (.tar.gz)") })));
  }

  function fact(label, value, status) {
    return el("div", { class: status ? `fact fact-${status}` : "fact" }, el("dt", { text: label }), el("dd", { text: String(value) }));
  }

  function renderInstances(section, jobId, data, filters, { route, chosen, operate, message }) {
    const rows = (data.list || []).map((row) => {
      if (row.filter_host) {
        return el("tr", { class: "filtered" },
          el("td", {}),
          el("td", { text: row.instance_id || "—" }), el("td", { text: row.ip || row.inner_ip || "—" }),
          el("td", { text: row.bk_host_id ?? "—" }), el("td", {}, statusBadge(row.status || "IGNORED")),
          el("td", { colspan: 5, text: row.status_display || row.msg || "" }));
      }
      const link = `#/task-list/${jobId}/log/${encodeInstance(row.instance_id)}`;
      const name = row.ip || row.instance_id;
      return el("tr", { "data-instance-id": row.instance_id },
        el("td", {}, Number.isInteger(row.bk_host_id) ? chooseBox(chosen, row.bk_host_id, name, operate) : ""),
        el("td", {}, el("a", { href: link, "aria-label": t("Log of {host}", { host: name }), text: row.instance_id })),
        el("td", { text: row.ip || "—" }),
        el("td", { text: row.bk_host_id ?? "—" }),
        el("td", {}, statusBadge(row.status)),
        el("td", { text: row.status_display || row.step || "" }),
        el("td", { text: row.start_time || "—" }),
        el("td", { text: duration(row.cost_time) }),
        el("td", { text: row.attempt ?? 1 }),
        el("td", { class: "row-actions" }, instanceActions(route, jobId, row, message)));
    });
    const pages = Math.max(1, Math.ceil((data.total || 0) / INSTANCE_PAGESIZE));
    const base = { status: filters.status, ip: filters.ip, instance_id: filters.instance_id };
    const table = el("table", { class: "grid", id: "instances" },
      el("caption", { text: t(data.total === 1 ? "{n} instance" : "{n} instances", { n: data.total || 0 }) }));
    const headers = ["instance_id", "IP", "bk_host_id", "Status", "Step", "Started", "Took", "Attempt", "Actions"];
    table.append(
      el("thead", {}, el("tr", {}, el("th", { scope: "col" }, chooseAllBox(table, operate)), headers.map((h) => el("th", { scope: "col", text: t(h) })))),
      el("tbody", {}, rows.length ? rows : el("tr", {}, el("td", { colspan: 10, class: "muted", text: t("No instance matches.") }))));
    section.replaceChildren(
      el("div", { class: "table-wrap" }, table),
      pager(filters.page, pages, (p) => `#/task-list/${jobId}?${query({ ...base, page: p })}`));
  }

  function followJob(route, jobId, load, live) {
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
          if (!(exc instanceof Superseded)) live.textContent = t("Could not refresh: {reason}", { reason: exc.message });
        }
      }, 300);
    };
    const finish = (status) => {
      stopped = true;
      live.textContent = t("Job {status}.", { status: status || t("ended") });
      announce(t("Job {id} {status}", { id: jobId, status: status || t("ended") }));
    };
    live.textContent = t("Live: updates as the hosts progress.");
    const poll = () => {
      const interval = window.setInterval(() => { if (stopped) window.clearInterval(interval); else refresh(); }, 2000);
      onLeave(route, () => window.clearInterval(interval));
    };
    if (!window.EventSource) { poll(); return; }
    const source = new EventSource(withLanguage(`/api/job/${jobId}/events/`));
    onLeave(route, () => { stopped = true; source.close(); if (timer) window.clearTimeout(timer); });
    source.addEventListener("instance", refresh);
    source.addEventListener("job", refresh);
    source.addEventListener("end", () => { source.close(); refresh(); });
    source.addEventListener("error", () => {
      if (source.readyState === EventSource.CLOSED && !stopped) poll(); // no stream here: poll instead
    });
  }

  // ---- hosts ---------------------------------------------------------------------------------------------

  const hostChoice = new Map(); // bk_host_id -> IP chosen on #/hosts, kept across its pages

  async function renderHosts(route) {
    setTitle(t("Hosts"));
    const page = Math.max(1, Number(route.params.get("page")) || 1);
    const ip = route.params.get("ip") || "";
    const data = await api("/api/inventory/hosts/", { method: "POST", body: { page, pagesize: HOST_PAGESIZE, ip: ip || undefined } });
    still(route);
    const pages = Math.max(1, Math.ceil((data.total || 0) / HOST_PAGESIZE));
    const ipBox = el("input", { id: "h-ip", name: "ip", type: "search", value: ip, placeholder: "127.0.0", inputmode: "decimal" });
    const filter = el("form", { class: "filters", role: "search", "aria-label": t("Filter hosts") },
      el("label", { for: "h-ip", text: "IP" }), ipBox,
      el("button", { type: "submit", text: t("Filter") }));
    filter.addEventListener("submit", (event) => {
      event.preventDefault();
      location.hash = `#/hosts?${query({ ip: ipBox.value.trim(), page: 1 })}`;
    });
    const message = actionMessage("action-message");
    const operate = operateForm("hosts-operate", hostChoice, message);
    const table = el("table", { class: "grid", id: "hosts" },
      el("caption", { text: t(data.total === 1 ? "{n} host" : "{n} hosts", { n: data.total || 0 }) }));
    const rows = (data.list || []).map((host) => {
      const name = host.inner_ip || host.inner_ipv6 || String(host.bk_host_id);
      return el("tr", { "data-host-id": host.bk_host_id },
        el("td", {}, chooseBox(hostChoice, host.bk_host_id, name, operate)),
        el("td", { text: host.bk_host_id }),
        el("td", { text: name }),
        el("td", { text: host.bk_cloud_id ?? "—" }),
        el("td", { text: host.bk_biz_id ?? "—" }),
        el("td", { text: host.os_type || "—" }),
        el("td", {}, host.status || host.agent_status || "—", host.status_display ? el("span", { class: "muted", text: ` ${host.status_display}` }) : ""),
        el("td", { text: host.agent_version || "—" }));
    });
    table.append(
      el("thead", {}, el("tr", {}, el("th", { scope: "col" }, chooseAllBox(table, operate)),
        ["bk_host_id", "IP", "Cloud area", "Business", "OS", "Agent", "Version"].map((h) => el("th", { scope: "col", text: t(h) })))),
      el("tbody", {}, rows.length ? rows : el("tr", {}, el("td", { colspan: 8, class: "muted", text: t("No host matches.") }))));
    main.replaceChildren(
      el("h1", { text: t("Hosts") }),
      filter, operate, message,
      el("div", { class: "table-wrap" }, table),
      pager(page, pages, (p) => `#/hosts?${query({ ip, page: p })}`));
  }

  // ---- install -------------------------------------------------------------------------------------------

  const OS_TYPES = ["LINUX", "WINDOWS", "AIX", "SOLARIS"];
  const MAX_INSTALL_HOSTS = 100;

  // The IPs of the install form's field: separated by commas, spaces or new lines, each once.
  function parseIps(text) {
    return [...new Set(text.split(/[\s,;，；]+/).map((ip) => ip.trim()).filter(Boolean))];
  }

  async function renderInstall(route) {
    setTitle(t("Install agents"));
    let areas = [];
    let areaProblem = null;
    try {
      areas = await api("/api/cloud/?with_default_area=true");
    } catch (exc) {
      if (exc instanceof ApiError && AUTH_CODES.has(exc.code)) throw exc;
      areaProblem = errorText(exc);
    }
    still(route);
    const field = (id, label, input, help) => {
      if (help) input.setAttribute("aria-describedby", `${id}-help`);
      return el("div", { class: "field" },
        el("label", { for: id, text: label }), input,
        help ? el("p", { class: "help", id: `${id}-help`, text: help }) : null);
    };
    const jobType = el("select", { id: "i-job-type", name: "job_type" },
      ["INSTALL_AGENT", "REINSTALL_AGENT"].map((value) => el("option", { value, text: value })));
    const biz = el("input", { id: "i-biz", name: "bk_biz_id", type: "number", min: 0, step: 1, required: true, inputmode: "numeric" });
    const cloud = el("select", { id: "i-cloud", name: "bk_cloud_id" },
      (areas.length ? areas : [{ bk_cloud_id: 0, bk_cloud_name: t("Direct area") }]).map((area) =>
        el("option", { value: area.bk_cloud_id, text: `${area.bk_cloud_name || ""} (${area.bk_cloud_id})` })));
    const ips = el("textarea", { id: "i-ips", name: "inner_ip", rows: 3, required: true, spellcheck: "false", autocomplete: "off" });
    const os = el("select", { id: "i-os", name: "os_type" }, OS_TYPES.map((value) => el("option", { value, text: value })));
    const account = el("input", { id: "i-account", name: "account", type: "text", value: "root", required: true, autocomplete: "off", spellcheck: "false" });
    const port = el("input", { id: "i-port", name: "port", type: "number", min: 1, max: 65535, value: 22, required: true, inputmode: "numeric" });
    const byPassword = el("input", { type: "radio", name: "auth_type", id: "i-auth-password", value: "PASSWORD", checked: true });
    const byKey = el("input", { type: "radio", name: "auth_type", id: "i-auth-key", value: "KEY" });
    // secrets: never prefilled, never remembered by the browser, cleared once sent
    const password = el("input", { id: "i-password", name: "password", type: "password", autocomplete: "off", spellcheck: "false" });
    const key = el("textarea", { id: "i-key", name: "key", rows: 4, autocomplete: "off", spellcheck: "false", class: "secret" });
    const passwordField = field("i-password", t("Password"), password);
    const keyField = field("i-key", t("Private key"), key, t("The key in OpenSSH or PEM form; it is stored encrypted and never shown again."));
    const showAuth = () => {
      passwordField.hidden = !byPassword.checked;
      keyField.hidden = byPassword.checked;
    };
    byPassword.addEventListener("change", showAuth);
    byKey.addEventListener("change", showAuth);
    showAuth();
    const transport = el("select", { id: "i-transport", name: "transport" },
      [["ssh", t("SSH (log in to the host)")], ["local", t("local (the service's own machine; superusers)")]].map(([value, label]) => el("option", { value, text: label })));
    const setupPath = el("input", { id: "i-setup-path", name: "setup_path", type: "text", spellcheck: "false", autocomplete: "off" });
    const message = actionMessage("action-message");
    const submit = el("button", { type: "submit", class: "primary", text: t("Install") });
    const form = el("form", { class: "card install", id: "install-form", "aria-labelledby": "install-title", autocomplete: "off" },
      el("h1", { id: "install-title", text: t("Install agents") }),
      areaProblem ? el("p", { class: "error", role: "alert", text: t("The cloud areas could not be read: {reason}", { reason: areaProblem }) }) : null,
      field("i-job-type", t("Job type"), jobType),
      field("i-biz", t("Business (bk_biz_id)"), biz),
      field("i-cloud", t("Cloud area"), cloud),
      field("i-ips", t("Inner IPs"), ips, t("One or more IPs, separated by commas, spaces or new lines; they share the login below.")),
      field("i-os", t("OS"), os),
      field("i-account", t("Login account"), account),
      field("i-port", t("SSH port"), port),
      el("fieldset", { class: "auth" },
        el("legend", { text: t("Authentication") }),
        el("span", { class: "check" }, byPassword, el("label", { for: "i-auth-password", text: t("By password") })),
        el("span", { class: "check" }, byKey, el("label", { for: "i-auth-key", text: t("By key") }))),
      passwordField, keyField,
      el("details", { class: "advanced" },
        el("summary", { text: t("nodeops options") }),
        field("i-transport", t("Transport"), transport),
        field("i-setup-path", t("Install path (setup_path)"), setupPath, t("An absolute path on the host; empty: the access point's default."))),
      el("div", { class: "dialog-buttons" }, submit),
      message);
    const clearSecrets = () => { password.value = ""; key.value = ""; };
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      message.replaceChildren();
      const list = parseIps(ips.value);
      const problems = [];
      if (!list.length) problems.push(t("Give at least one IP."));
      if (list.length > MAX_INSTALL_HOSTS) problems.push(t("At most {n} hosts at once.", { n: MAX_INSTALL_HOSTS }));
      if (problems.length) {
        message.replaceChildren(el("p", { class: "error", role: "alert", text: problems.join(" ") }));
        return;
      }
      const login = { account: account.value.trim(), port: Number(port.value), auth_type: byPassword.checked ? "PASSWORD" : "KEY" };
      const secret = byPassword.checked ? { password: password.value } : { key: key.value };
      const extra = { transport: transport.value };
      if (setupPath.value.trim()) extra.setup_path = setupPath.value.trim();
      const hosts = list.map((ip) => ({
        bk_biz_id: Number(biz.value), bk_cloud_id: Number(cloud.value), inner_ip: ip, os_type: os.value, ...login, ...secret, ...extra,
      }));
      act({
        title: t("Install on {n} hosts?", { n: hosts.length }),
        text: t("A new {job_type} job logs in as {account} to: {hosts}", { job_type: jobType.value, account: login.account, hosts: list.join(", ") }),
        confirm: t("Install"),
        message,
        button: submit,
        call: async () => {
          try {
            return await api("/api/job/install/", { method: "POST", body: { job_type: jobType.value, hosts } });
          } finally {
            clearSecrets(); // sent once: whatever the answer, the page keeps no copy
          }
        },
        done: (data) => {
          flash = t("Job {id} started.", { id: data.job_id });
          location.hash = `#/task-list/${data.job_id}`;
        },
      });
    });
    main.replaceChildren(form);
  }

  // ---- one instance --------------------------------------------------------------------------------------

  async function renderInstance(route) {
    const { jobId, instanceId } = route;
    setTitle(`${t("Job {id}", { id: jobId })} · ${instanceId}`);
    const view = new InstanceView(route);
    onLeave(route, () => view.stop());
    await view.start();
  }

  class InstanceView {
    constructor(route) {
      this.route = route;
      this.jobId = route.jobId;
      this.instanceId = route.instanceId;
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
      const downloadHref = withLanguage(`${this.base()}/download/?${query({ instance_id: id })}`);
      this.heading = el("h1", { id: "instance-title" }, t("Log of {host}", { host: id }));
      this.message = actionMessage("action-message");
      this.actions = el("div", { class: "toolbar actions", role: "group", "aria-label": t("Host actions") });
      this.actionsFor = null; // the status and IP the actions were drawn for
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
      const toolbar = el("div", { class: "toolbar", role: "group", "aria-label": t("Log display") },
        el("a", { class: "button", id: "download-log", href: downloadHref, download: `job-${this.jobId}-${id.replace(/[^\w.-]+/g, "_")}.log`, text: t("Download log") }),
        el("span", { class: "check" }, wrapBox, el("label", { for: "wrap-lines", text: t("Wrap lines") })),
        el("span", { class: "check" }, followBox, el("label", { for: "follow-log", text: t("Scroll with new lines") })),
        el("button", { type: "button", id: "expand-all", onclick: () => this.setOpen(true), text: t("Expand all") }),
        el("button", { type: "button", id: "collapse-all", onclick: () => this.setOpen(false), text: t("Collapse all") }));

      const q = el("input", { id: "search-q", name: "q", type: "search", required: true, spellcheck: "false" });
      const regex = el("input", { id: "search-regex", type: "checkbox" });
      const cased = el("input", { id: "search-case", type: "checkbox" });
      const search = el("form", { class: "filters search", role: "search", "aria-label": t("Search this log") },
        el("label", { for: "search-q", text: t("Search") }), q,
        el("span", { class: "check" }, regex, el("label", { for: "search-regex", text: t("Regular expression") })),
        el("span", { class: "check" }, cased, el("label", { for: "search-case", text: t("Match case") })),
        el("button", { type: "submit", text: t("Search") }),
        el("button", { type: "button", id: "search-clear", text: t("Clear"), onclick: () => { q.value = ""; this.clearSearch(); q.focus(); } }));
      search.addEventListener("submit", (event) => {
        event.preventDefault();
        this.search(q.value, regex.checked, cased.checked);
      });

      main.replaceChildren(
        el("nav", { class: "breadcrumb", "aria-label": t("Breadcrumb") },
          el("a", { href: "#/", text: t("Jobs") }), " › ",
          el("a", { href: `#/task-list/${this.jobId}`, text: t("Job {id}", { id: this.jobId }) }), " › ", id),
        this.heading, this.statusLine, this.actions, this.message, toolbar, search, this.results, this.live, this.stepsBox);
      this.describeHost();
      await this.loadAll();
      still(this.route);
      this.renderStatus();
      if (!this.finished) this.followLive();
      else this.live.textContent = t("This instance has finished; its log is complete.");
    }

    async describeHost() {
      try {
        const data = await api(`/api/job/${this.jobId}/details/`, {
          method: "POST", body: { pagesize: 1, conditions: [{ key: "instance_id", value: [this.instanceId] }] },
        });
        const row = (data.list || [])[0];
        if (this.stopped) return;
        if (row && row.ip) this.heading.textContent = `${t("Log of {host}", { host: row.ip })} (${this.instanceId})`;
        this.ip = row ? row.ip : undefined;
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
        `${t("Status")} `, statusBadge(this.status),
        this.attempt ? ` · ${t("attempt {n}", { n: this.attempt })}` : "",
        this.jobType ? ` · ${this.jobType}` : "");
      const drawnFor = `${this.status}|${this.ip || ""}`;
      if (this.actionsFor !== drawnFor) {
        this.actionsFor = drawnFor;
        const row = { instance_id: this.instanceId, ip: this.ip, status: this.status };
        this.actions.replaceChildren(...instanceActions(this.route, this.jobId, row, this.message));
      }
    }

    // The first read: every page of the tail answer from the start (or the seed answer if tails are not served).
    async loadAll() {
      for (let page = 0; page < MAX_TAIL_PAGES; page += 1) {
        let data;
        try {
          data = await api(this.tailUrl());
          still(this.route);
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
          "aria-label": t("Log of step {n}", { n: i + 1 }), id: `log-${i}`,
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
          step.start_time ? `${step.start_time} → ${step.finish_time || "…"}` : t("not started"),
          took !== null ? ` (${duration(took)})` : ""));
      step.log.setAttribute("aria-label", t("Log of step {n}, {step}", { n: index + 1, step: step.step }));
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
      this.live.textContent = t("Following live…");
      const url = withLanguage(`${this.base()}/stream/?${query({ instance_id: this.instanceId })}&cursor=${encodeURIComponent(this.cursor)}`);
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
          this.live.textContent = t("Following live (polling)…");
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
        this.live.textContent = t("Could not read the log: {reason}", { reason: exc.message });
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
      this.live.textContent = t("Finished: {status}. The log is complete.", { status: this.status });
      announce(t("Instance finished: {status}", { status: this.status }));
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
      const summary = el("p", { id: "search-summary", text: t(shown === 1 ? "{n} match highlighted in the log below." : "{n} matches highlighted in the log below.", { n: shown }) });
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
          el("button", { type: "button", class: "link-button", onclick: () => this.jumpTo(hit.step_index, hit.line_no), text: `${hit.step} · ${t("line {n}", { n: hit.line_no })}` }),
          " ", el("code", { class: `hit${hit.level ? ` lvl-${hit.level}` : ""}` }, text));
      });
      const lines = t(data.total === 1 ? "{n} matching line" : "{n} matching lines", { n: data.total });
      const counted = data.complete === false ? t("at least {lines} (the search stopped at its time limit)", { lines }) : lines;
      summary.textContent = t(shown === 1 ? "{lines} in this instance's log; {n} match highlighted below." : "{lines} in this instance's log; {n} matches highlighted below.", { lines: counted, n: shown });
      if (items.length) this.results.append(el("ol", { class: "hits", "aria-label": t("Matching lines") }, items));
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

  // The page's own words (index.html marks them data-i18n) and the language switch, which re-renders the route.
  function translatePage() {
    document.documentElement.lang = window.NodeopsI18n.htmlLang();
    for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
    for (const node of document.querySelectorAll("[data-i18n-label]")) node.setAttribute("aria-label", t(node.dataset.i18nLabel));
    showWho(localStorage.getItem("nodeops.username"));
  }

  const languageSelect = document.getElementById("language");
  languageSelect.value = window.NodeopsI18n.language();
  languageSelect.addEventListener("change", () => {
    window.NodeopsI18n.setLanguage(languageSelect.value);
    translatePage();
    render();
  });
  translatePage();
  document.getElementById("sign-out").addEventListener("click", signOut);
  document.getElementById("skip-link").addEventListener("click", (event) => {
    event.preventDefault();
    main.focus();
  });
  window.addEventListener("hashchange", render);
  render();
})();
