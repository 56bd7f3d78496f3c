// The viewer's words in Chinese (zh) and English (en), loaded before app.js: window.NodeopsI18n.t(key, vars).
// A key is the English text itself ({name} marks a value filled in from vars); ZH gives each one in Chinese.
// The language is Node Manager's blueking_language cookie (zh-cn or en) if set, else the first of the browser's
// languages that is Chinese or English, else English. The header's switch sets the cookie (readable by the
// page, path=/, SameSite=Lax, a year) so the service, which reads the same cookie, answers in it too; every API
// call also carries bk_language. A key missing from ZH shows in English and is kept in missing() for the tests.
"use strict";

(() => {
  const COOKIE = "blueking_language";
  const COOKIE_VALUE = { zh: "zh-cn", en: "en" }; // Node Manager's values of the cookie and of bk_language
  const HTML_LANG = { zh: "zh-CN", en: "en" };
  const MAX_AGE_S = 365 * 24 * 3600;

  const ZH = {
    // units and errors
    "{s} s": "{s} 秒",
    "{m} min {s} s": "{m} 分 {s} 秒",
    "{h} h {m} min": "{h} 小时 {m} 分",
    "The service did not answer ({reason}). Is it running?": "服务没有应答（{reason}）。它在运行吗？",
    "{path} answered HTTP {status} without JSON": "{path} 返回了 HTTP {status}，不是 JSON",
    "{path} answered HTTP {status}": "{path} 返回了 HTTP {status}",
    "error {code}": "错误 {code}",
    "Error {code}: ": "错误 {code}：",
    "Error: ": "错误：",
    "Loading…": "加载中…",
    // header
    "Skip to content": "跳到正文",
    "Main": "主导航",
    "Language": "语言",
    "Sign out": "退出登录",
    "Signed in as {name}": "当前用户 {name}",
    // sign in
    "Sign in": "登录",
    "Sign in to nodeops": "登录 nodeops",
    "A ticket from ": "由 ",
    ". It is kept in an HttpOnly cookie.": " 签发的票据，保存在 HttpOnly Cookie 中。",
    "Sign-in failed: {reason}": "登录失败：{reason}",
    "Switch user?": "切换用户？",
    "Stay signed in as {name}": "继续以 {name} 登录",
    "Stay signed in": "保持当前登录",
    "Sign in with the link's token": "使用链接中的票据登录",
    "You are already signed in as {name}.": "你已经以 {name} 登录。",
    "You are already signed in.": "你已经登录。",
    "This link signs in with the bk_token it carries, which may be someone else's: what you do next would be done as its user. Sign in with it only if you asked for this link.":
      "此链接使用它携带的 bk_token 登录，该票据可能属于他人：之后的操作都将以其用户身份执行。仅当这个链接是你本人申请的时候才使用它登录。",
    // jobs
    "Jobs": "任务历史",
    "Job": "任务",
    "Job {id}": "任务 {id}",
    "Any status": "全部状态",
    "Filter jobs": "筛选任务",
    "Status": "状态",
    "Filter": "筛选",
    "Clear": "清除",
    " with status {status}": "，状态为 {status}",
    "{n} job": "{n} 个任务",
    "{n} jobs": "{n} 个任务",
    "No job matches.": "没有符合条件的任务。",
    "Type": "类型",
    "Hosts": "主机",
    "Created by": "执行者",
    "Started": "开始时间",
    "Ended": "结束时间",
    "Took": "耗时",
    "{n} total": "共 {n}",
    "{n} ok": "{n} 成功",
    "{n} failed": "{n} 失败",
    "{n} running": "{n} 执行中",
    "{n} pending": "{n} 等待",
    "{n} ignored": "{n} 忽略",
    "Pages": "分页",
    "← Previous": "← 上一页",
    "Page {page} of {pages}": "第 {page} / {pages} 页",
    "Next →": "下一页 →",
    // statuses (Node Manager's display names)
    "Pending": "等待执行",
    "Running": "正在执行",
    "Succeeded": "执行成功",
    "Failed": "执行失败",
    "Partly failed": "部分失败",
    "Terminated": "已终止",
    "Removed": "已移除",
    "Filtered": "被过滤的",
    "Ignored": "已忽略",
    // one job
    "Breadcrumb": "导航路径",
    "Instances": "主机实例",
    "{n} instance": "{n} 个实例",
    "{n} instances": "{n} 个实例",
    "No instance matches.": "没有符合条件的实例。",
    "instance_id": "instance_id",
    "IP": "IP",
    "bk_host_id": "bk_host_id",
    "Step": "步骤",
    "Attempt": "重试次数",
    "Actions": "操作",
    "Filter instances": "筛选实例",
    "Statistics": "统计",
    "Total": "总数",
    "Download every log (.tar.gz)": "下载全部日志 (.tar.gz)",
    "Log of {host}": "{host} 的日志",
    "Job {status}.": "任务 {status}。",
    "Job {id} {status}": "任务 {id} {status}",
    "ended": "已结束",
    "Could not refresh: {reason}": "无法刷新：{reason}",
    "Live: updates as the hosts progress.": "实时：随主机进度更新。",
    // actions
    "Cancel": "取消",
    "{title} Done.": "{title} 已完成。",
    "Job actions": "任务操作",
    "Host actions": "主机操作",
    "Retry": "重试",
    "Revoke": "终止",
    "Retry the failed hosts": "重试失败主机",
    "Revoke the job": "终止任务",
    "Retry the failed hosts of job {id}?": "重试任务 {id} 的失败主机？",
    "The {n} failed hosts run again as a new attempt; the others are left as they are.":
      "{n} 台失败主机将作为新一次尝试重新执行，其它主机保持不变。",
    "Retry started: the failed hosts run again.": "已开始重试：失败主机重新执行。",
    "Revoke job {id}?": "终止任务 {id}？",
    "Its pending and running hosts stop, and the job ends TERMINATED.": "等待和执行中的主机将停止，任务以 TERMINATED 结束。",
    "Job {id} revoked.": "任务 {id} 已终止。",
    "Retry {host} from its failed step": "从失败步骤重试 {host}",
    "Retry from the failed step": "从失败步骤重试",
    "Retry {host} from its failed step?": "从失败步骤重试 {host}？",
    "A new attempt of this host starts at the step that failed; the steps before it are kept.":
      "这台主机的新一次尝试从失败的步骤开始，之前的步骤保留。",
    "{host} runs again from {step}.": "{host} 从 {step} 重新执行。",
    "Revoke {host}": "终止 {host}",
    "Revoke {host}?": "终止 {host}？",
    "This host stops; the job's other hosts go on.": "这台主机将停止，任务的其它主机继续执行。",
    "{host} revoked.": "{host} 已终止。",
    "Operation": "操作类型",
    "Restart": "重启",
    "Reload": "重载配置",
    "Upgrade": "升级",
    "Uninstall": "卸载",
    "Operate on the chosen hosts": "对选中的主机执行操作",
    "Start on the chosen hosts": "在选中的主机上执行",
    "{n} host chosen": "已选 {n} 台主机",
    "{n} hosts chosen": "已选 {n} 台主机",
    "Choose at least one host with its checkbox first.": "请先勾选至少一台主机。",
    "{operation} the agent of {n} hosts?": "{operation} {n} 台主机的 Agent？",
    "A new {job_type} job starts on: {hosts}": "将在以下主机上启动新的 {job_type} 任务：{hosts}",
    "Start {operation}": "开始{operation}",
    "Job {id} started.": "任务 {id} 已启动。",
    "Job {id} started; {n} hosts were left out (see the job).": "任务 {id} 已启动；{n} 台主机被过滤（见任务详情）。",
    "Choose {host}": "选择 {host}",
    "Choose every host of this page": "选择本页全部主机",
    // hosts
    "Filter hosts": "筛选主机",
    "{n} host": "{n} 台主机",
    "{n} hosts": "{n} 台主机",
    "No host matches.": "没有符合条件的主机。",
    "Cloud area": "管控区域",
    "Business": "业务",
    "OS": "操作系统",
    "Agent": "Agent 状态",
    "Version": "版本",
    // install
    "Install": "安装",
    "Install agents": "安装 Agent",
    "The cloud areas could not be read: {reason}": "无法读取管控区域：{reason}",
    "Direct area": "直连区域",
    "Job type": "任务类型",
    "Business (bk_biz_id)": "业务 (bk_biz_id)",
    "Inner IPs": "内网 IP",
    "One or more IPs, separated by commas, spaces or new lines; they share the login below.":
      "一个或多个 IP，以逗号、空格或换行分隔；它们使用下面相同的登录信息。",
    "Login account": "登录账号",
    "SSH port": "SSH 端口",
    "Authentication": "认证方式",
    "Password": "密码",
    "By password": "密码认证",
    "By key": "密钥认证",
    "Private key": "密钥",
    "The key in OpenSSH or PEM form; it is stored encrypted and never shown again.": "OpenSSH 或 PEM 格式的私钥；加密保存，不再显示。",
    "nodeops options": "nodeops 选项",
    "Transport": "连接方式",
    "SSH (log in to the host)": "SSH（登录到主机）",
    "local (the service's own machine; superusers)": "local（服务所在的机器，仅超级管理员）",
    "Install path (setup_path)": "安装路径 (setup_path)",
    "An absolute path on the host; empty: the access point's default.": "主机上的绝对路径；留空则使用接入点的默认路径。",
    "Give at least one IP.": "请至少填写一个 IP。",
    "At most {n} hosts at once.": "一次最多 {n} 台主机。",
    "Install on {n} hosts?": "在 {n} 台主机上安装？",
    "A new {job_type} job logs in as {account} to: {hosts}": "新的 {job_type} 任务将以 {account} 登录：{hosts}",
    // one instance
    "Log display": "日志显示",
    "Download log": "下载日志",
    "Wrap lines": "自动换行",
    "Scroll with new lines": "跟随新日志滚动",
    "Expand all": "全部展开",
    "Collapse all": "全部收起",
    "Search this log": "搜索此日志",
    "Search": "搜索",
    "Regular expression": "正则表达式",
    "Match case": "区分大小写",
    "This instance has finished; its log is complete.": "该实例已结束，日志完整。",
    "attempt {n}": "第 {n} 次尝试",
    "Log of step {n}": "步骤 {n} 的日志",
    "Log of step {n}, {step}": "步骤 {n}（{step}）的日志",
    "not started": "未开始",
    "Following live…": "实时跟随中…",
    "Following live (polling)…": "实时跟随中（轮询）…",
    "Could not read the log: {reason}": "无法读取日志：{reason}",
    "Finished: {status}. The log is complete.": "已结束：{status}。日志完整。",
    "Instance finished: {status}": "实例已结束：{status}",
    "line {n}": "第 {n} 行",
    "{n} match highlighted in the log below.": "下方日志中高亮了 {n} 处匹配。",
    "{n} matches highlighted in the log below.": "下方日志中高亮了 {n} 处匹配。",
    "{n} matching line": "{n} 行匹配",
    "{n} matching lines": "{n} 行匹配",
    "at least {lines} (the search stopped at its time limit)": "至少 {lines}（搜索已达到时间上限）",
    "{lines} in this instance's log; {n} match highlighted below.": "该实例的日志中 {lines}；下方高亮了 {n} 处匹配。",
    "{lines} in this instance's log; {n} matches highlighted below.": "该实例的日志中 {lines}；下方高亮了 {n} 处匹配。",
    "Matching lines": "匹配的行",
  };

  const missing = new Set();

  function readCookie() {
    for (const part of document.cookie.split(";")) {
      const [name, ...rest] = part.trim().split("=");
      if (name === COOKIE) return decodeURIComponent(rest.join("=")).trim().toLowerCase();
    }
    return "";
  }

  function fromTag(tag) {
    const lower = String(tag || "").toLowerCase();
    if (lower.startsWith("zh")) return "zh";
    if (lower.startsWith("en")) return "en";
    return "";
  }

  function chooseLanguage() {
    const chosen = fromTag(readCookie());
    if (chosen) return chosen;
    for (const tag of navigator.languages || [navigator.language]) {
      const found = fromTag(tag);
      if (found) return found;
    }
    return "en";
  }

  let current = chooseLanguage();

  function t(key, vars) {
    let text = key;
    if (current === "zh") {
      if (Object.prototype.hasOwnProperty.call(ZH, key)) text = ZH[key];
      else missing.add(key);
    }
    if (!vars) return text;
    return text.replace(/\{(\w+)\}/g, (whole, name) => (Object.prototype.hasOwnProperty.call(vars, name) ? String(vars[name]) : whole));
  }

  function setLanguage(language) {
    current = language === "zh" ? "zh" : "en";
    document.cookie = `${COOKIE}=${COOKIE_VALUE[current]}; path=/; max-age=${MAX_AGE_S}; SameSite=Lax`;
  }

  window.NodeopsI18n = Object.freeze({
    t,
    setLanguage,
    language: () => current,
    bkLanguage: () => COOKIE_VALUE[current],
    htmlLang: () => HTML_LANG[current],
    missing: () => [...missing],
    keys: () => Object.keys(ZH),
  });
})();
