import httpx, json
from tests.factories import make_app, make_seed_job, make_user

def test_probe(services, live_server):
    app = make_app(services)
    make_user(services, "admin", superuser=True)
    job = make_seed_job(services)
    u = live_server.url
    esb = f"{u}/api/c/compapi/v2/nodeman/api/job/log/"
    base = {"bk_app_code": app.code, "bk_app_secret": app.secret, "bk_username": "admin"}
    cases = [
        ("GET", esb, {**base, "bk_app_code": "a\x00b", "job_id": 1, "instance_id": 1}, None, None),
        ("GET", esb, {**base, "bk_username": "ad\x00min", "job_id": 1, "instance_id": 1}, None, None),
        ("GET", esb, {**base, "bk_token": "v1.abc.é", "job_id": 1, "instance_id": 1}, None, None),
        ("GET", esb, {**base, "bk_app_secret": "é\x00", "job_id": 1, "instance_id": 1}, None, None),
        ("GET", esb, {**base, "job_id": 1, "instance_id": "service|instance|service|1\x00"}, None, None),
        ("GET", esb, {**base, "job_id": 1, "instance_id": "host|topo|module|33"}, None, None),
        ("GET", esb, {**base, "job_id": 1, "instance_id": "host|instance|host|127.0.0.1-0-0"}, None, None),
        ("HEAD", esb, {**base, "job_id": 1, "instance_id": 1}, None, None),
        ("OPTIONS", esb, {**base, "job_id": 1, "instance_id": 1}, None, None),
        ("POST", esb, {}, b'\xef\xbb\xbf{"job_id": 1}', None),
        ("POST", esb, {}, b'{"job_id": 1e400}', None),
        ("POST", esb, {}, json.dumps({**base, "job_id": 1, "instance_id": 10**30}).encode(), None),
        ("POST", esb, {}, json.dumps({**base, "job_id": 1.0, "instance_id": 1.5}).encode(), None),
        ("POST", esb, {}, json.dumps({**base, "job_id": True, "instance_id": [1]}).encode(), None),
        ("GET", esb, {**base, "job_id": 1, "instance_id": 1}, None, {"X-Bkapi-Authorization": json.dumps({"bk_app_code": 5})}),
        ("GET", esb, {**base, "job_id": 1, "instance_id": 1}, None, {"X-Bkapi-Authorization": '{"bk_app_code": "\\ud800"}'}),
        ("GET", f"{u}/api/job/0/log/", {**base, "instance_id": 1}, None, None),
        ("GET", f"{u}/api/job/1/log", {**base, "instance_id": 1}, None, None),
        ("GET", f"{u}/api/job/99999999999999999999999/log/", {**base, "instance_id": 1}, None, None),
    ]
    for m, url, params, content, headers in cases:
        r = httpx.request(m, url, params=params, content=content, headers=headers)
        print(m, url.replace(u, ""), repr(params.get("instance_id")), r.status_code, r.text[:300])
