#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/corpus/<target>/seed-*.

Sources, all from the repository:
- the official Python SDK's requests in crates/rotd-aliyun/testdata/sdk_vectors.json (V3 and V1), as
  HTTP/1.1 request text with a leading mode byte 0x00 ("wire" mode, see fuzz/src/lib.rs);
- the resource-policy documents the API tests use (crates/rotd-api/src/kms/policy.rs, tests/kms_api.rs);
- config/examples: rotd.toml, then each secrets.d file, NUL-separated (the config_loader input form).

Run from anywhere: python3 fuzz/seeds/gen_corpus.py. Re-running overwrites the seed-* files only; inputs
libFuzzer added to the corpora are left alone.
"""
import json
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[2]
CORPUS = ROOT / "fuzz" / "corpus"


def slug(name):
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def write(target, name, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / f"seed-{name}").write_bytes(data)


def wire(method, path, raw_query, headers, body):
    target = path + ("?" + raw_query if raw_query else "")
    head = f"{method} {target} HTTP/1.1\r\n" + "".join(f"{n}: {v}\r\n" for n, v in headers)
    return b"\x00" + head.encode() + b"\r\n" + body.encode()


vectors = json.loads((ROOT / "crates/rotd-aliyun/testdata/sdk_vectors.json").read_text())["vectors"]
for v in vectors:
    if v["scheme"] == "v3":
        headers = v["headers"] + [["Authorization", v["authorization"]]]
        data = wire(v["method"], v["path"], v["raw_query"], headers, v["body"])
        write("v3_verify", slug(v["name"]), data)
    else:
        headers = [["host", "kms.cn-hangzhou.aliyuncs.com"], ["user-agent", "aliyun-python-sdk-core"]]
        if v["body"]:
            headers.append(["content-type", "application/x-www-form-urlencoded"])
        data = wire(v["method"], "/", v["raw_query"], headers, v["body"])
        write("v1_verify", slug(v["name"]), data)
    write("percent_and_query", f'{v["scheme"]}-{slug(v["name"])}', data)
# Raw mode (odd first byte) for the decoder: a form body alone.
write("percent_and_query", "raw-form", b"\x01SecretData=%7B%22a%22%3A%22b+c%22%7D&SecretName=app%2Fdb")
write(
    "percent_and_query",
    "batch",
    wire(
        "POST",
        "/",
        "Action=BatchGetSecretValue&Version=2016-01-20&SecretsList=%5B%22a%22%2C%7B%22SecretName%22%3A"
        "%22acs%3Akms%3Acn-hangzhou%3A1%3Asecret%2Fb%22%2C%22VersionId%22%3A%22v1%22%7D%5D",
        [["host", "h"], ["x-acs-action", "BatchGetSecretValue"]],
        "",
    ),
)

st = lambda body: '{"Version":"1","Statement":[{' + body + "}]}"
policies = {
    "empty": '{"Version":"1","Statement":[]}',
    "deny-key": st('"Effect":"Deny","Principal":{"RAM":["AK1"]},"Action":["kms:GetSecretValue"],"Resource":["*"]'),
    "allow-all": st('"Effect":"Allow","Principal":{"RAM":["*"]},"Action":["kms:*"],"Resource":["*"]'),
    "strings": st('"Effect":"Allow","Principal":{"RAM":"*"},"Action":"kms:*"'),
    "sid-wildcards": st(
        '"Sid":"a-b_c/d+e=f.g@h","Effect":"Deny","Principal":{"RAM":["LTAIabc","*"]},'
        '"Action":["kms:Get*","kms:DeleteSecret"],"Resource":"*"'
    ),
    "account": st('"Effect":"Allow","Principal":{"RAM":["acs:ram::123456789012:*"]},"Action":["kms:*"],"Resource":["*"]'),
    "deny-batch": st('"Effect":"Deny","Principal":{"RAM":["testid"]},"Action":["kms:BatchGetSecretValue"],"Resource":["*"]'),
    "condition": st(
        '"Effect":"Allow","Principal":{"RAM":["*"]},"Action":["kms:GetSecretValue"],"Resource":["*"],'
        '"Condition":{"IpAddress":{"acs:SourceIp":["10.0.0.0/8"]}}'
    ),
    "not-principal": st('"Effect":"Deny","NotPrincipal":{"RAM":["LTAIx"]},"Action":["kms:*"],"Resource":["*"]'),
    "two-statements": '{"Version":"1","Statement":[{"Effect":"Allow","Principal":{"RAM":["*"]},"Action":["kms:*"]},'
    '{"Effect":"Deny","Principal":{"RAM":["ak2","testid"]},"Action":["kms:Delete*","kms:Put*"]}]}',
    "key-policy": '{"Actions":["kms:GetSecretValue","kms:*"],"Secrets":["app/*","*"]}',
}
for name, doc in policies.items():
    write("resource_policy", name, doc.encode())

examples = ROOT / "config" / "examples"
daemon = (examples / "rotd.toml").read_text()
secret_files = sorted((examples / "secrets.d").glob("*.toml"))
write("config_loader", "daemon-only", daemon.encode())
write("config_loader", "empty", b"")
for f in secret_files:
    write("config_loader", f.stem, (daemon + "\0" + f.read_text()).encode())
write("config_loader", "all", "\0".join([daemon] + [f.read_text() for f in secret_files]).encode())
write(
    "config_loader",
    "broken",
    b'data_dir = 1\n[api]\nlisten = "nowhere"\n\0name = "x"\n[rds]\nhost = = 2\n[rds.account\n\0name = "x"\n',
)
