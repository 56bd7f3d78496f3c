"""What the steps run on a host to say why an install fails (network spec §18, docs/compatibility.md "Diagnoses").

``AP_CHECK_SCRIPT`` runs on the host's ``python3`` before the agent starts: it POSTs to ``/api/agent/ping/`` of
the URL the agent will report to, the way the agent connects (``http.client``, straight to the address: the agent
ignores proxy variables), within a short timeout, and prints one verdict line: ``ok``, or ``failed: <error>``
(connection refused, timed out, another error, an answer that is not HTTP 200). Before it, one line per proxy
variable found in the account's environment (``http_proxy``, ``https_proxy``, ``all_proxy``, ``no_proxy`` in any
case; a user and password in its value masked), since a check by hand with curl would go through them and the
agent does not. It keeps to Python 3.6 and the standard library, as the agent does.
"""

from __future__ import annotations

AP_CHECK_TIMEOUT_S = 5.0
AP_CHECK_PREFIX = "nodeops-ap-check: "
AP_CHECK_OK = f"{AP_CHECK_PREFIX}ok"
AP_CHECK_FAILED = f"{AP_CHECK_PREFIX}failed: "
AGENT_LOG_TAIL_LINES = 30

AP_CHECK_SCRIPT = r"""
import http.client, os, re, socket, sys, urllib.parse
url, timeout = sys.argv[1], float(sys.argv[2])
for name in sorted(os.environ):
    if name.lower() in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        value = re.sub(r"//[^/@]*@", "//***@", os.environ[name])
        print(PREFIX + "proxy variable %s=%s in the account's environment (the agent ignores it)" % (name, value))
parts = urllib.parse.urlsplit(url)
kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
try:
    connection = kind(parts.hostname, parts.port, timeout=timeout)
    connection.request("POST", parts.path, body=b"{}", headers={"Content-Type": "application/json"})
    status = connection.getresponse().status
except ConnectionRefusedError:
    error = "connection refused"
except socket.timeout:
    error = "timed out after %g s" % timeout
except (OSError, http.client.HTTPException) as exc:
    error = "%s: %s" % (type(exc).__name__, exc)
else:
    if status == 200:
        print(PREFIX + "ok")
        sys.exit(0)
    error = "answered HTTP %d, not the access point's envelope" % status
print(PREFIX + "failed: " + error)
sys.exit(1)
""".replace("PREFIX", repr(AP_CHECK_PREFIX))
