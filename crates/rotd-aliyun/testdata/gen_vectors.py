#!/usr/bin/env python3
"""Signature test vectors for rotd-aliyun, computed by the official Alibaba Cloud Python SDK's own code.

Every signature in sdk_vectors.json comes from the SDK's signing functions, never from code written here:
ACS3-HMAC-SHA256 from `alibabacloud_tea_openapi.utils.Utils.get_authorization` and V1 HMAC-SHA1 from
`Utils.get_rpcsignature`; each is cross-checked against the same function in `alibabacloud_openapi_util`. The
wire forms are built the way the SDK builds them too: the query string with `darabonba.core.DaraCore.compose_url`,
V3 form bodies with `Utils.to_form`, V1 form bodies with `DaraForm.to_form_string(Utils.query(...))`, and the body
hash with `Utils.hash`. Dates and nonces are fixed so the output is deterministic. The Rust test
`tests/sdk_vectors.rs` recomputes every vector and checks that verification accepts it and rejects a change.

Regenerate from the workspace root (pin these versions; they are the ones the vectors were made with):

    python3 -m venv /tmp/aliyun-venv
    /tmp/aliyun-venv/bin/pip install alibabacloud-tea-openapi==0.4.6 alibabacloud-openapi-util==0.2.4 \
        darabonba-core==1.0.9
    /tmp/aliyun-venv/bin/python crates/rotd-aliyun/testdata/gen_vectors.py \
        > crates/rotd-aliyun/testdata/sdk_vectors.json
"""

import json
import sys
from importlib.metadata import version

from alibabacloud_openapi_util.client import Client as OpenApiUtil
from alibabacloud_tea_openapi import utils as tea_utils
from alibabacloud_tea_openapi.utils import Utils
from darabonba.core import DaraCore
from darabonba.request import DaraRequest
from darabonba.utils.form import Form as DaraForm

ALGORITHM = 'ACS3-HMAC-SHA256'
PACKAGES = ['alibabacloud-tea-openapi', 'alibabacloud-openapi-util', 'darabonba-core', 'alibabacloud-tea-util']


def wire_query(headers, pathname, query):
    """The query string exactly as the SDK puts it on the URL (urlencode, so a space becomes '+')."""
    req = DaraRequest()
    req.protocol = 'https'
    req.port = 443
    req.headers = dict(headers)
    req.pathname = pathname
    req.query = dict(query)
    url = DaraCore.compose_url(req)
    return url.split('?', 1)[1] if '?' in url else ''


def v3_vector(name, ak, secret, query, extra_headers=None, body=None, method='POST', pathname='/',
              date='2024-01-01T00:00:00Z', nonce='0123456789abcdef0123456789abcdef', action='GetSecretValue',
              sdk_headers=True):
    """One ACS3-HMAC-SHA256 request built as `do_request` builds it, signed by the SDK.

    With `sdk_headers=False` only host, x-acs-action, x-acs-version, x-acs-date, x-acs-signature-nonce and
    x-acs-content-sha256 are sent, which is the reference's worked example.
    """
    headers = {
        'host': 'kms.cn-hangzhou.aliyuncs.com',
        'x-acs-version': '2016-01-20',
        'x-acs-action': action,
        'user-agent': 'AlibabaCloud (Linux; x86_64) Python/3.11.7 Core/0.4.3 TeaDSL/2',
        'x-acs-date': date,
        'x-acs-signature-nonce': nonce,
        'accept': 'application/json',
    }
    headers.update(extra_headers or {})
    body_text = ''
    if body is not None:
        body_text = Utils.to_form(body)
        headers['content-type'] = 'application/x-www-form-urlencoded'
    payload = Utils.hash(body_text.encode('utf-8'), ALGORITHM).hex()
    headers['x-acs-content-sha256'] = payload
    if sdk_headers:
        headers['x-acs-credentials-provider'] = 'static_ak'
    else:
        for name in ('user-agent', 'accept'):
            del headers[name]

    req = DaraRequest()
    req.method = method
    req.pathname = pathname
    req.query = dict(query)
    req.headers = dict(headers)
    authorization = Utils.get_authorization(req, ALGORITHM, payload, ak, secret)
    cross_check = OpenApiUtil.get_authorization(req, ALGORITHM, payload, ak, secret)
    assert authorization == cross_check, (name, authorization, cross_check)

    return {
        'name': name,
        'scheme': 'v3',
        'access_key_id': ak,
        'access_key_secret': secret,
        'method': method,
        'path': pathname,
        'query': [[k, v] for k, v in query.items()],
        'raw_query': wire_query(headers, pathname, query),
        'headers': [[k, v] for k, v in headers.items()],
        'body': body_text,
        'canonical_query': tea_utils.get_canonical_query_string(req.query),
        'authorization': authorization,
    }


def v1_vector(name, ak, secret, params, body=None, method='POST', timestamp='2024-01-01T00:00:00Z',
              nonce='0123456789abcdef0123456789abcdef', action='GetSecretValue'):
    """One legacy RPC request built as `do_rpcrequest` builds it, signed by the SDK."""
    query = {
        'Action': action,
        'Format': 'json',
        'Version': '2016-01-20',
        'Timestamp': timestamp,
        'SignatureNonce': nonce,
    }
    query.update(params)
    query['SignatureMethod'] = 'HMAC-SHA1'
    query['SignatureVersion'] = '1.0'
    query['AccessKeyId'] = ak
    body_text = ''
    if body is not None:
        body_text = DaraForm.to_form_string(Utils.query(body))
    signed = DaraCore.merge({}, query, Utils.query(body))
    signature = Utils.get_rpcsignature(signed, method, secret)
    cross_check = OpenApiUtil.get_rpcsignature(signed, method, secret)
    assert signature == cross_check, (name, signature, cross_check)
    query['Signature'] = signature

    host = {'host': 'kms.cn-hangzhou.aliyuncs.com'}
    return {
        'name': name,
        'scheme': 'v1',
        'access_key_id': ak,
        'access_key_secret': secret,
        'method': method,
        'signed_params': [[k, v] for k, v in signed.items()],
        'raw_query': wire_query(host, '/', query),
        'body': body_text,
        'signature': signature,
    }


UNICODE = 'pässwörd 日本語 ✓ 😀'
PUNCT = "a*b~c!d'e(f)g+h=i&j%k#l/m?n:o@p,q;r$s[t]u{v}w|x\\y^z`\"<>"


def v3_vectors():
    yield v3_vector('reference worked example, exactly its headers', 'testid', 'testsecret',
                    {'SecretName': 'my secret/1', 'VersionStage': 'ACSCurrent'}, sdk_headers=False)
    yield v3_vector('reference worked example with every header the SDK sends', 'testid', 'testsecret',
                    {'SecretName': 'my secret/1', 'VersionStage': 'ACSCurrent'})
    yield v3_vector('unicode and spaces in values', 'LTAI5tUnicodeKey', 'unicode-secret-ü',
                    {'SecretName': 'app/db ' + UNICODE, 'VersionStage': 'ACSCurrent',
                     'FetchExtendedConfig': 'True'})
    yield v3_vector('reserved punctuation in values', 'ak-punct', 'secret with spaces and / + =',
                    {'SecretName': PUNCT, 'VersionId': '~tilde~ *star* /slash/'})
    yield v3_vector('empty values', 'ak-empty', 'sek',
                    {'SecretName': 's1', 'VersionId': '', 'VersionStage': ''})
    yield v3_vector('form body like PutSecretValue', 'ak-body', 'body-secret',
                    {'SecretName': 'rds/prod', 'VersionId': 'v2', 'VersionStages': '["ACSCurrent"]'},
                    body={'SecretData': '{"AccountName":"app","AccountPassword":"p@ss w+rd/é&x=1"}'},
                    action='PutSecretValue')
    yield v3_vector('CreateSecret with JSON parameters', 'ak-create', 'create-secret',
                    {'EnableAutomaticRotation': 'True',
                     'ExtendedConfig': '{"SecretSubType":"SingleUser","DBInstanceId":"rm-1","CustomData":{}}',
                     'RotationInterval': '7d', 'SecretName': 'rds/app', 'SecretType': 'Rds',
                     'Tags': '[{"TagKey":"env","TagValue":"prod"}]', 'VersionId': 'v1'},
                    body={'SecretData': '{"a":"b c"}'}, action='CreateSecret')
    yield v3_vector('many headers, padded values, retry headers', 'ak-headers', 'header-secret',
                    {'SecretName': 's2'},
                    extra_headers={'x-acs-retry-attempts': '2', 'x-acs-retry-delay': '  150  ',
                                   'X-Custom-Trace': '\ttrace-id 42 ', 'accept-language': 'en-US'})
    yield v3_vector('key ordering is bytewise', 'ak-order', 'order-secret',
                    {'b': '1', 'B': '2', 'a': '3', 'A': '4', '_z': '5', 'Z_': '6', 'a.b': '7', 'a-b': '8',
                     'ExtendedConfig.CustomData.k1': 'v1'})
    yield v3_vector('non-root path and GET without query', 'ak-path', 'path-secret', {},
                    method='GET', pathname='/v1/secrets/abc')
    yield v3_vector('long value and a different date', 'ak-long', 'long-secret',
                    {'SecretName': 'long', 'Description': ('x y/é*' * 400)},
                    date='2026-11-28T21:10:05Z', nonce='46d18a41654c1e22d8fbbb0d1ff5876b',
                    action='UpdateSecret')
    yield v3_vector('key needing escapes is signed verbatim by this SDK', 'ak-rawkey', 'rawkey-secret',
                    {'ExtendedConfig.CustomData.my key': 'v 1', 'SecretName': 's3'}, action='UpdateSecret')


def v1_vectors():
    yield v1_vector('plain GetSecretValue', 'testid', 'testsecret',
                    {'SecretName': 'my secret/1', 'VersionStage': 'ACSCurrent'})
    yield v1_vector('unicode and spaces', 'LTAI5tUnicodeKey', 'unicode-secret-ü',
                    {'SecretName': 'app/db ' + UNICODE, 'FetchExtendedConfig': 'True'})
    yield v1_vector('reserved punctuation', 'ak-punct', 'secret with spaces and / + =',
                    {'SecretName': PUNCT, 'VersionId': '~tilde~ *star* /slash/'})
    yield v1_vector('empty values are signed', 'ak-empty', 'sek',
                    {'SecretName': 's1', 'SignatureType': '', 'VersionId': ''})
    yield v1_vector('body params are signed', 'ak-body', 'body-secret',
                    {'SecretName': 'rds/prod', 'VersionId': 'v2'},
                    body={'SecretData': '{"AccountName":"app","AccountPassword":"p@ss w+rd/é&x=1"}'},
                    action='PutSecretValue')
    yield v1_vector('GET method and other timestamp', 'ak-get', 'get-secret',
                    {'SecretName': 's9', 'RegionId': 'cn-hangzhou'}, method='GET',
                    timestamp='2026-11-28T21:10:05Z', nonce='46d18a41654c1e22d8fbbb0d1ff5876b')
    yield v1_vector('many params sorted bytewise', 'ak-order', 'order-secret',
                    {'b': '1', 'B': '2', 'a': '3', '_z': '5', 'a.b': '7', 'a-b': '8',
                     'Filters': '[{"Key":"SecretName","Values":["a b","c*d"]}]', 'PageSize': '100'},
                    action='ListSecrets')
    yield v1_vector('long body', 'ak-long', 'long-secret', {'SecretName': 'long'},
                    body={'SecretData': 'v' * 3000 + ' é/*~'}, action='PutSecretValue')


def main():
    out = {
        'generator': 'crates/rotd-aliyun/testdata/gen_vectors.py',
        'python': sys.version.split()[0],
        'packages': {p: version(p) for p in PACKAGES},
        'vectors': list(v3_vectors()) + list(v1_vectors()),
    }
    json.dump(out, sys.stdout, indent=1, ensure_ascii=False)
    sys.stdout.write('\n')


if __name__ == '__main__':
    main()
