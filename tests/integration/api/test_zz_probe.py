import httpx, json
from tests.factories import make_app, make_seed_job, make_user

def test_probe(services, live_server):
    app = make_app(services)
    app2 = make_app(services, "noname", allow_username=False)
    make_user(services, "admin", superuser=True)
    job = make_seed_job(services)
    u = live_server.url
    esb = f"{u}/api/c/compapi/v2/nodeman/api/job/log/"
    base = {"bk_app_code": app.code, "bk_app_secret": app.secret, "bk_username": "admin"}
    cases = [
        ("GET", esb, {}, None, None),
        ("GET", esb, {"bk_app_code": "x"}, None, None),
        ("GET", esb, {"bk_app_code": "x", "bk_app_secret": "y"}, None, None),
        ("GET", esb, {"bk_app_code": app.code, "bk_app_secret": app.secret}, None, None),
        ("GET", esb, {"bk_app_code": app2.code, "bk_app_secret": app2.secret, "bk_username": "admin"}, None, None),
        ("GET", esb, {**base, "bk_token": "junk"}, None, None),
        ("GET", esb, base, None, None),
        ("GET", esb, {**base, "job_id": "abc", "instance_id": "host|x", "attempt": "0"}, None, None),
        ("GET", esb, {**base, "job_id": 1, "instance_id": "foo|instance|host|1"}, None, None),
        ("GET", esb, {**base, "job_id": 1, "instance_id": "host|instance|host|300.1.1.1-0-0"}, None, None),
        ("GET", esb, {**base, "job_id": 99, "instance_id": 1}, None, None),
        ("GET", esb, {**base, "job_id": 1, "instance_id": 5}, None, None),
        ("GET", esb, {**base, "job_id": 1, "instance_id": 1, "attempt": 3}, None, None),
        ("GET", f"{u}/api/job/abc/log/", {**base, "instance_id": 1}, None, None),
        ("POST", f"{u}/api/job/1/log/", base, None, None),
        ("POST", f"{u}/api/bk-nodeman/prod/api/job/1/log/", base, None, None),
        ("PUT", esb, base, None, None),
        ("GET", f"{u}/nope", {}, None, None),
        ("POST", esb, {}, b"{not json", None),
        ("POST", esb, {}, b"[1,2]", None),
        ("POST", esb, {}, b"x" * (1024*1024+1), None),
        ("GET", esb, {"job_id": 1, "instance_id": 1}, None, {"X-Bkapi-Authorization": "{bad"}),
        ("GET", esb, {"job_id": 1, "instance_id": 1}, None, {"X-Bkapi-Authorization": "[1]"}),
        ("GET", f"{u}/healthz", {}, None, None),
        ("DELETE", f"{u}/healthz", {}, None, None),
    ]
    for m, url, params, content, headers in cases:
        r = httpx.request(m, url, params=params, content=content, headers=headers)
        print(m, url.replace(u, ""), params.get("job_id"), r.status_code, r.text[:600])
