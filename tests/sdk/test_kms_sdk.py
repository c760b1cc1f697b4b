"""Drives rotd through Alibaba Cloud's own Python clients (no code written here talks HTTP).

Run by tests/tests/sdk.rs against a fresh `rotd serve`. Configuration comes from the environment:

    ROTD_ENDPOINT        host:port of the KMS-compatible HTTPS API (used verbatim as the SDK endpoint)
    ROTD_CA              path to the CA certificate that signed the server certificate
    ROTD_ADMIN_AK_ID     / ROTD_ADMIN_AK_SECRET       an access key allowed everything
    ROTD_RO_AK_ID        / ROTD_RO_AK_SECRET          a key allowed only kms:GetSecretValue on app/*
    ROTD_BIN, ROTD_CONFIG_PATH (optional)             run `rotd -c ROTD_CONFIG_PATH rotate app/cache/rotated`
                                                       (a Generic secret declared in secrets.d/) for the cache test
    ROTD_MYSQL_HOST, ROTD_MYSQL_PORT (rds-rotation)   the MariaDB server behind the declared Rds secret app/db
    ROTD_QS_AK_ID / ROTD_QS_AK_SECRET, ROTD_QS_VALUE (quickstart)
                         a key made with `rotd access-key create --policy AliyunKMSSecretUserAccess
                         --policy AliyunKMSCryptoUserAccess --secret 'app/*'`, and the value of the generic
                         secret app/quickstart/db-password, created with `rotd secret create` (initial
                         version left at its default, tag env=prod, a description)

Exits 0 when every check passed; otherwise prints the failure and exits non-zero.
"""

import json
import os
import subprocess
import sys
import time
import traceback

from alibabacloud_kms20160120 import models as kms
from alibabacloud_kms20160120.client import Client
from alibabacloud_tea_openapi import models as open_api_models
from alibabacloud_tea_openapi.exceptions import ClientException
from darabonba.runtime import RuntimeOptions

ENDPOINT = os.environ["ROTD_ENDPOINT"]
CA = os.environ["ROTD_CA"]
ADMIN = (os.environ["ROTD_ADMIN_AK_ID"], os.environ["ROTD_ADMIN_AK_SECRET"])
RO = (os.environ["ROTD_RO_AK_ID"], os.environ["ROTD_RO_AK_SECRET"])
# Optional: the rotd binary and its rotd.toml, to rotate a secretsd-declared secret mid-test.
ROTD_BIN = os.environ.get("ROTD_BIN")
ROTD_CONFIG = os.environ.get("ROTD_CONFIG_PATH")

RT = RuntimeOptions(autoretry=False, read_timeout=20000, connect_timeout=5000)
COVERED = []


def step(name):
    COVERED.append(name)
    print("ok  " + name, flush=True)


def config(key, signature):
    cfg = open_api_models.Config(
        access_key_id=key[0],
        access_key_secret=key[1],
        endpoint=ENDPOINT,
        protocol="https",
        region_id="cn-hangzhou",
    )
    cfg.ca = CA
    if signature == "v2":
        cfg.signature_algorithm = "v2"
    return cfg


def client(key, signature):
    return Client(config(key, signature))


def expect_client_error(fn, code, status=None):
    """Runs fn, which must raise the SDK's ClientException with `code` (and `status`, if given)."""
    try:
        fn()
    except ClientException as e:
        assert e.code == code, f"expected code {code}, got {e.code} ({e.status_code}): {e.message}"
        if status is not None:
            assert e.status_code == status, f"expected HTTP {status} for {code}, got {e.status_code}"
        assert e.data and e.data.get("RequestId"), f"error without RequestId: {e.data}"
        return e
    raise AssertionError(f"expected ClientException {code}, but the call succeeded")


def stages(body):
    return sorted(body.version_stages.version_stage)


def run_kms(sig):
    """Every implemented secret action through the plain SDK with one signature version."""
    c = client(ADMIN, sig)
    p = f"app/{sig}"
    name = f"{p}/db"

    # CreateSecret: Generic, with Tags, Description and an explicit VersionId.
    r = c.create_secret_with_options(
        kms.CreateSecretRequest(
            secret_name=name,
            version_id="v1",
            secret_data="first-value",
            secret_data_type="text",
            description="created by the SDK",
            tags=json.dumps([{"TagKey": "team", "TagValue": "core"}, {"TagKey": "env", "TagValue": "test"}]),
        ),
        RT,
    )
    assert r.status_code == 200, r.status_code
    assert r.body.secret_name == name and r.body.version_id == "v1", r.body.to_map()
    assert r.body.arn and r.body.arn.startswith("acs:kms:") and r.body.arn.endswith(":secret/" + name), r.body.arn
    assert r.body.request_id, "no RequestId"
    step(f"[{sig}] CreateSecret Generic with Tags + VersionId")

    expect_client_error(
        lambda: c.create_secret_with_options(
            kms.CreateSecretRequest(secret_name=name, version_id="v9", secret_data="x"), RT
        ),
        "Rejected.ResourceExist",
        409,
    )
    step(f"[{sig}] CreateSecret duplicate -> Rejected.ResourceExist 409")

    # GetSecretValue, default stage.
    r = c.get_secret_value_with_options(kms.GetSecretValueRequest(secret_name=name), RT)
    b = r.body
    assert b.secret_data == "first-value", b.to_map()
    assert b.version_id == "v1" and stages(b) == ["ACSCurrent"], b.to_map()
    assert b.secret_data_type == "text" and b.secret_type == "Generic", b.to_map()
    assert b.create_time and b.create_time.endswith("Z"), b.create_time
    step(f"[{sig}] GetSecretValue default stage")

    # By ARN too.
    arn = c.describe_secret_with_options(kms.DescribeSecretRequest(secret_name=name), RT).body.arn
    r = c.get_secret_value_with_options(kms.GetSecretValueRequest(secret_name=arn), RT)
    assert r.body.secret_data == "first-value" and r.body.secret_name == name, r.body.to_map()
    step(f"[{sig}] GetSecretValue by ARN")

    # PutSecretValue: v2 becomes ACSCurrent, v1 ACSPrevious.
    r = c.put_secret_value_with_options(
        kms.PutSecretValueRequest(secret_name=name, version_id="v2", secret_data="second-value"), RT
    )
    assert r.body.version_id == "v2" and stages(r.body) == ["ACSCurrent"], r.body.to_map()
    # Same id, same value: idempotent.
    c.put_secret_value_with_options(
        kms.PutSecretValueRequest(secret_name=name, version_id="v2", secret_data="second-value"), RT
    )
    step(f"[{sig}] PutSecretValue (+ idempotent repeat)")

    r = c.get_secret_value_with_options(kms.GetSecretValueRequest(secret_name=name), RT)
    assert r.body.secret_data == "second-value" and r.body.version_id == "v2", r.body.to_map()
    r = c.get_secret_value_with_options(kms.GetSecretValueRequest(secret_name=name, version_stage="ACSPrevious"), RT)
    assert r.body.secret_data == "first-value" and r.body.version_id == "v1", r.body.to_map()
    assert stages(r.body) == ["ACSPrevious"], r.body.to_map()
    step(f"[{sig}] GetSecretValue VersionStage=ACSPrevious")
    r = c.get_secret_value_with_options(kms.GetSecretValueRequest(secret_name=name, version_id="v1"), RT)
    assert r.body.secret_data == "first-value", r.body.to_map()
    step(f"[{sig}] GetSecretValue VersionId")

    # A custom stage via PutSecretValue(VersionStages), then move ACSCurrent onto it.
    r = c.put_secret_value_with_options(
        kms.PutSecretValueRequest(
            secret_name=name, version_id="v3", secret_data="third-value", version_stages=json.dumps(["MyPending"])
        ),
        RT,
    )
    assert stages(r.body) == ["MyPending"], r.body.to_map()
    r = c.get_secret_value_with_options(kms.GetSecretValueRequest(secret_name=name), RT)
    assert r.body.version_id == "v2", "a custom-stage put must not move ACSCurrent"
    c.update_secret_version_stage_with_options(
        kms.UpdateSecretVersionStageRequest(
            secret_name=name, version_stage="ACSCurrent", remove_from_version="v2", move_to_version="v3"
        ),
        RT,
    )
    r = c.get_secret_value_with_options(kms.GetSecretValueRequest(secret_name=name), RT)
    assert r.body.secret_data == "third-value" and r.body.version_id == "v3", r.body.to_map()
    c.update_secret_version_stage_with_options(
        kms.UpdateSecretVersionStageRequest(secret_name=name, version_stage="MyPending", remove_from_version="v3"), RT
    )
    step(f"[{sig}] PutSecretValue(VersionStages) + UpdateSecretVersionStage move/remove")

    # ListSecretVersionIds.
    r = c.list_secret_version_ids_with_options(kms.ListSecretVersionIdsRequest(secret_name=name), RT)
    got = {v.version_id: sorted(v.version_stages.version_stage) for v in r.body.version_ids.version_id}
    assert got.get("v3") == ["ACSCurrent"], got
    assert "ACSCurrent" not in got.get("v2", []), got
    assert r.body.secret_name == name, r.body.to_map()
    r = c.list_secret_version_ids_with_options(
        kms.ListSecretVersionIdsRequest(secret_name=name, include_deprecated="true"), RT
    )
    ids = {v.version_id for v in r.body.version_ids.version_id}
    assert {"v1", "v2", "v3"} <= ids, ids
    step(f"[{sig}] ListSecretVersionIds (+ IncludeDeprecated)")

    # UpdateSecret(Description) and DescribeSecret(FetchTags).
    c.update_secret_with_options(kms.UpdateSecretRequest(secret_name=name, description="new description"), RT)
    r = c.describe_secret_with_options(kms.DescribeSecretRequest(secret_name=name, fetch_tags="true"), RT)
    b = r.body
    assert b.description == "new description", b.to_map()
    assert b.secret_type == "Generic" and b.secret_name == name, b.to_map()
    tags = {t.tag_key: t.tag_value for t in b.tags.tag}
    assert tags == {"team": "core", "env": "test"}, tags
    step(f"[{sig}] UpdateSecret(Description) + DescribeSecret(FetchTags)")

    # TagResource / UntagResource.
    c.tag_resource_with_options(
        kms.TagResourceRequest(secret_name=name, tags=json.dumps([{"TagKey": "owner", "TagValue": "ops"}])), RT
    )
    c.untag_resource_with_options(kms.UntagResourceRequest(secret_name=name, tag_keys=json.dumps(["env"])), RT)
    r = c.describe_secret_with_options(kms.DescribeSecretRequest(secret_name=name, fetch_tags=True), RT)
    tags = {t.tag_key: t.tag_value for t in r.body.tags.tag}
    assert tags == {"team": "core", "owner": "ops"}, tags
    step(f"[{sig}] TagResource + UntagResource")

    # ListSecrets: paging and a Filters JSON.
    for i in range(3):
        c.create_secret_with_options(
            kms.CreateSecretRequest(secret_name=f"{p}/page{i}", version_id="v1", secret_data=f"p{i}"), RT
        )
    filt = json.dumps([{"Key": "SecretName", "Values": [f"{p}/page0", f"{p}/page1", f"{p}/page2"]}])
    r1 = c.list_secrets_with_options(kms.ListSecretsRequest(page_number=1, page_size=2, filters=filt), RT)
    r2 = c.list_secrets_with_options(kms.ListSecretsRequest(page_number=2, page_size=2, filters=filt), RT)
    assert r1.body.total_count == 3 and r2.body.total_count == 3, (r1.body.to_map(), r2.body.to_map())
    assert r1.body.page_number == 1 and r1.body.page_size == 2, r1.body.to_map()
    n1 = [s.secret_name for s in r1.body.secret_list.secret]
    n2 = [s.secret_name for s in r2.body.secret_list.secret]
    assert len(n1) == 2 and len(n2) == 1, (n1, n2)
    assert sorted(n1 + n2) == [f"{p}/page0", f"{p}/page1", f"{p}/page2"], (n1, n2)
    step(f"[{sig}] ListSecrets paging + Filters SecretName")

    r = c.list_secrets_with_options(
        kms.ListSecretsRequest(
            page_size=100,
            fetch_tags="true",
            filters=json.dumps([{"Key": "TagKey", "Values": ["owner"]}]),
        ),
        RT,
    )
    found = {s.secret_name: s for s in r.body.secret_list.secret}
    assert name in found, list(found)
    assert not any(n.startswith(f"{p}/page") for n in found), list(found)
    assert {t.tag_key for t in found[name].tags.tag} == {"team", "owner"}, found[name].to_map()
    step(f"[{sig}] ListSecrets Filters TagKey + FetchTags")

    r = c.list_secrets_with_options(kms.ListSecretsRequest(), RT)
    assert r.body.page_number == 1 and r.body.page_size == 10, r.body.to_map()
    assert r.body.total_count >= 4, r.body.to_map()
    step(f"[{sig}] ListSecrets defaults")

    # GetRandomPassword.
    r = c.get_random_password_with_options(
        kms.GetRandomPasswordRequest(password_length="40", exclude_punctuation="true", exclude_characters="abc"), RT
    )
    pw = r.body.random_password
    assert len(pw) == 40 and pw.isalnum() and not set("abc") & set(pw), pw
    r = c.get_random_password_with_options(kms.GetRandomPasswordRequest(), RT)
    assert len(r.body.random_password) == 32, r.body.random_password
    step(f"[{sig}] GetRandomPassword")

    # SetSecretPolicy / GetSecretPolicy.
    policy = {
        "Version": "1",
        "Statement": [
            {
                "Sid": "sdk-test",
                "Effect": "Allow",
                "Principal": {"RAM": ["acs:ram::123456789012:*"]},
                "Action": ["kms:*"],
                "Resource": ["*"],
            }
        ],
    }
    c.set_secret_policy_with_options(kms.SetSecretPolicyRequest(secret_name=name, policy=json.dumps(policy)), RT)
    r = c.get_secret_policy_with_options(kms.GetSecretPolicyRequest(secret_name=name), RT)
    assert json.loads(r.body.policy) == policy, r.body.policy
    step(f"[{sig}] SetSecretPolicy + GetSecretPolicy")

    # DeleteSecret with a recovery window, RestoreSecret.
    r = c.delete_secret_with_options(kms.DeleteSecretRequest(secret_name=name, recovery_window_in_days="7"), RT)
    assert r.body.planned_delete_time, r.body.to_map()
    r = c.describe_secret_with_options(kms.DescribeSecretRequest(secret_name=name), RT)
    assert r.body.planned_delete_time, r.body.to_map()
    expect_client_error(
        lambda: c.put_secret_value_with_options(
            kms.PutSecretValueRequest(secret_name=name, version_id="v4", secret_data="x"), RT
        ),
        "Rejected.ResourceInDeleteWindow",
        409,
    )
    c.restore_secret_with_options(kms.RestoreSecretRequest(secret_name=name), RT)
    r = c.describe_secret_with_options(kms.DescribeSecretRequest(secret_name=name), RT)
    assert not r.body.planned_delete_time, r.body.to_map()
    r = c.get_secret_value_with_options(kms.GetSecretValueRequest(secret_name=name), RT)
    assert r.body.secret_data == "third-value", r.body.to_map()
    step(f"[{sig}] DeleteSecret(RecoveryWindowInDays) + RestoreSecret (+ ResourceInDeleteWindow)")

    # DeleteSecret(ForceDeleteWithoutRecovery=True): gone at once.
    c.delete_secret_with_options(kms.DeleteSecretRequest(secret_name=name, force_delete_without_recovery="true"), RT)
    expect_client_error(
        lambda: c.get_secret_value_with_options(kms.GetSecretValueRequest(secret_name=name), RT),
        "Forbidden.ResourceNotFound",
        404,
    )
    c.delete_secret_with_options(kms.DeleteSecretRequest(secret_name=f"{p}/page0", force_delete_without_recovery=True), RT)
    expect_client_error(
        lambda: c.describe_secret_with_options(kms.DescribeSecretRequest(secret_name=f"{p}/page0"), RT),
        "Forbidden.ResourceNotFound",
        404,
    )
    step(f"[{sig}] DeleteSecret(ForceDeleteWithoutRecovery=true/True)")

    # Error paths.
    e = expect_client_error(
        lambda: c.get_secret_value_with_options(kms.GetSecretValueRequest(secret_name=f"{p}/missing"), RT),
        "Forbidden.ResourceNotFound",
        404,
    )
    assert e.message, "error without a message"
    step(f"[{sig}] missing secret -> ClientException Forbidden.ResourceNotFound 404")

    bad = client((ADMIN[0], ADMIN[1] + "x"), sig)
    try:
        bad.get_secret_value_with_options(kms.GetSecretValueRequest(secret_name=f"{p}/page1"), RT)
        raise AssertionError("a wrong AccessKeySecret was accepted")
    except ClientException as e:
        assert 400 <= e.status_code < 500, (e.status_code, e.code)
        assert e.code in ("IncompleteSignature", "SignatureDoesNotMatch", "Forbidden.AccessKey"), (e.code, e.message)
        step(f"[{sig}] wrong AccessKeySecret -> {e.status_code} {e.code}")

    unknown = client(("LTAIdoesnotexist000000", "nope"), sig)
    expect_client_error(
        lambda: unknown.get_secret_value_with_options(kms.GetSecretValueRequest(secret_name=f"{p}/page1"), RT),
        "InvalidAccessKeyId.NotFound",
        404,
    )
    step(f"[{sig}] unknown AccessKeyId -> InvalidAccessKeyId.NotFound 404")

    # The restricted key: reads app/* only, and nothing but GetSecretValue.
    ro = client(RO, sig)
    r = ro.get_secret_value_with_options(kms.GetSecretValueRequest(secret_name=f"{p}/page1"), RT)
    assert r.body.secret_data == "p1", r.body.to_map()
    c.create_secret_with_options(
        kms.CreateSecretRequest(secret_name=f"other/{sig}/x", version_id="v1", secret_data="hidden"), RT
    )
    expect_client_error(
        lambda: ro.get_secret_value_with_options(kms.GetSecretValueRequest(secret_name=f"other/{sig}/x"), RT),
        "Forbidden.NoPermission",
        403,
    )
    expect_client_error(
        lambda: ro.put_secret_value_with_options(
            kms.PutSecretValueRequest(secret_name=f"{p}/page1", version_id="v2", secret_data="x"), RT
        ),
        "Forbidden.NoPermission",
        403,
    )
    step(f"[{sig}] restricted key: app/* readable; other/* and PutSecretValue -> Forbidden.NoPermission 403")

    # BatchGetSecretValue: values per secret, failures per secret in Errors (authorized per secret).
    def batch(cl, *entries):
        items = [kms.BatchGetSecretValueRequestSecretsList(**e) for e in entries]
        return cl.batch_get_secret_value_with_options(kms.BatchGetSecretValueRequest(secrets_list=items), RT).body

    b = batch(c, {"secret_name": f"{p}/page1"}, {"secret_name": f"{p}/page2", "version_stage": "ACSCurrent"},
              {"secret_name": f"{p}/missing"})
    assert b.request_id, b.to_map()
    got = {v.secret_name: v for v in b.secret_values}
    assert sorted(got) == [f"{p}/page1", f"{p}/page2"], b.to_map()
    assert got[f"{p}/page1"].secret_data == "p1" and got[f"{p}/page2"].secret_data == "p2", b.to_map()
    assert got[f"{p}/page1"].version_stages.version_stage == ["ACSCurrent"], b.to_map()
    assert got[f"{p}/page1"].secret_type == "Generic" and got[f"{p}/page1"].version_id, b.to_map()
    assert [(e.secret_name, e.code, e.http_status) for e in b.errors] == [
        (f"{p}/missing", "Forbidden.ResourceNotFound", 404)
    ], b.to_map()
    # A batch entry needs kms:BatchGetSecretValue as well as kms:GetSecretValue on its secret: the key
    # allowed only kms:GetSecretValue reads nothing through a batch, not even app/*.
    b = batch(ro, {"secret_name": f"{p}/page1"}, {"secret_name": f"other/{sig}/x"})
    assert b.secret_values in (None, []), b.to_map()
    assert [(e.secret_name, e.code, e.http_status) for e in b.errors] == [
        (f"{p}/page1", "Forbidden.NoPermission", 403),
        (f"other/{sig}/x", "Forbidden.NoPermission", 403),
    ], b.to_map()
    assert "hidden" not in json.dumps(b.to_map()) and "p1" not in json.dumps(b.to_map()), b.to_map()
    step(f"[{sig}] BatchGetSecretValue (+ per-secret Errors: ResourceNotFound; NoPermission for a key without kms:BatchGetSecretValue)")


KNOWN_INCOMPATIBILITIES = set()


def rds_value(secret_data):
    """The vendor returns an Rds value as exactly {"AccountName","AccountPassword"} (reference §5), even though
    CreateSecret takes {"Accounts":[{...}]}."""
    v = json.loads(secret_data)
    assert isinstance(v, dict) and set(v) == {"AccountName", "AccountPassword"}, f"Rds value shape: {sorted(v)}"
    return v


def run_rds(sig):
    """A managed Rds secret: CreateSecret with ExtendedConfig, GetSecretValue(FetchExtendedConfig)."""
    c = client(ADMIN, sig)
    name = f"app/{sig}/rds"
    ext = {"SecretSubType": "SingleUser", "DBInstanceId": "rm-test0001", "CustomData": {"k": "v"}}
    r = c.create_secret_with_options(
        kms.CreateSecretRequest(
            secret_name=name,
            version_id="r1",
            secret_type="Rds",
            secret_data=json.dumps({"Accounts": [{"AccountName": "appuser", "AccountPassword": "pw-one"}]}),
            extended_config=ext,
        ),
        RT,
    )
    assert r.body.secret_type == "Rds", r.body.to_map()
    r = c.get_secret_value_with_options(kms.GetSecretValueRequest(secret_name=name, fetch_extended_config=True), RT)
    b = r.body
    assert b.secret_type == "Rds", b.to_map()
    assert rds_value(b.secret_data) == {"AccountName": "appuser", "AccountPassword": "pw-one"}, b.secret_data
    got = json.loads(b.extended_config)
    assert got.get("SecretSubType") == "SingleUser" and got.get("DBInstanceId") == "rm-test0001", got
    assert got.get("CustomData") == {"k": "v"}, got
    assert b.automatic_rotation in ("Enabled", "Disabled", "Invalid"), b.to_map()
    step(f"[{sig}] CreateSecret Rds with ExtendedConfig + GetSecretValue(FetchExtendedConfig=True)")
    c.update_secret_rotation_policy_with_options(
        kms.UpdateSecretRotationPolicyRequest(secret_name=name, enable_automatic_rotation=True, rotation_interval="7d"),
        RT,
    )
    d = c.describe_secret_with_options(kms.DescribeSecretRequest(secret_name=name), RT).body
    assert d.automatic_rotation == "Enabled" and d.rotation_interval == "604800s", d.to_map()
    c.update_secret_rotation_policy_with_options(
        kms.UpdateSecretRotationPolicyRequest(secret_name=name, enable_automatic_rotation=False), RT
    )
    d = c.describe_secret_with_options(kms.DescribeSecretRequest(secret_name=name), RT).body
    assert d.automatic_rotation == "Disabled", d.to_map()
    # This secret has no rotation backend in the daemon, so RotateSecret says so instead of pretending.
    expect_client_error(
        lambda: c.rotate_secret_with_options(kms.RotateSecretRequest(secret_name=name, version_id="r2"), RT),
        "InvalidParameter",
        400,
    )
    step(f"[{sig}] UpdateSecretRotationPolicy (7d -> 604800s, disable); RotateSecret without a backend -> InvalidParameter")
    return name


def run_cache_client():
    """alibabacloud-secretsmanager-client-v2 pointed at rotd with add_config()."""
    from alibabacloud_secretsmanager_client_v2.secret_manager_cache_client_builder import (
        SecretManagerCacheClientBuilder,
    )
    from alibabacloud_secretsmanager_client_v2.service.default_secret_manager_client_builder import (
        DefaultSecretManagerClientBuilder,
    )

    admin = client(ADMIN, "v3")
    name = "app/cache/token"
    admin.create_secret_with_options(
        kms.CreateSecretRequest(secret_name=name, version_id="c1", secret_data="cached-one"), RT
    )
    rds = "app/cache/rds"
    admin.create_secret_with_options(
        kms.CreateSecretRequest(
            secret_name=rds,
            version_id="r1",
            secret_type="Rds",
            secret_data=json.dumps({"Accounts": [{"AccountName": "u", "AccountPassword": "old-pw"}]}),
            extended_config={"SecretSubType": "SingleUser", "DBInstanceId": "rm-cache"},
        ),
        RT,
    )

    # The restricted key is enough for the caching client (it only calls GetSecretValue).
    secret_client = DefaultSecretManagerClientBuilder.standard().add_config(config(RO, "v3")).build()
    cache = (
        SecretManagerCacheClientBuilder.new_cache_client_builder(secret_client)
        .with_secret_ttl(name, 3600 * 1000)
        .with_secret_ttl(rds, 3600 * 1000)
        .with_secret_ttl("app/cache/rotated", 3600 * 1000)
        .build()
    )
    try:
        assert cache.get_secret_value(name) == "cached-one"
        info = cache.get_secret_info(name)
        assert info.version_id == "c1" and info.secret_type == "Generic", info
        step("[cache] get_secret_value")

        admin.put_secret_value_with_options(
            kms.PutSecretValueRequest(secret_name=name, version_id="c2", secret_data="cached-two"), RT
        )
        assert cache.get_secret_value(name) == "cached-one", "served from the cache within the TTL"
        assert cache.refresh_now(name) is True, "refresh_now failed (see log above)"
        assert cache.get_secret_value(name) == "cached-two", cache.get_secret_value(name)
        assert cache.get_secret_info(name).version_id == "c2"
        step("[cache] PutSecretValue + refresh_now -> new value")

        v = rds_value(cache.get_secret_value(rds))
        assert v == {"AccountName": "u", "AccountPassword": "old-pw"}, v
        info = cache.get_secret_info(rds)
        assert info.secret_type == "Rds", info
        ext = info.extended_config if isinstance(info.extended_config, dict) else json.loads(info.extended_config)
        assert ext.get("DBInstanceId") == "rm-cache", ext
        step("[cache] Rds secret with ExtendedConfig")

        # A secret rotated by rotd itself (declared in secrets.d/, rotated with `rotd rotate`): the cache keeps the
        # old value until refresh_now, then serves the rotated one.
        if ROTD_BIN and ROTD_CONFIG:
            rot = "app/cache/rotated"
            before = cache.get_secret_value(rot)
            assert before, "empty generated value"
            rotate = [ROTD_BIN, "-c", ROTD_CONFIG, "rotate", rot, "--version-id", "sdk-rot-1"]
            deadline = time.time() + 30
            while True:
                done = subprocess.run(rotate, capture_output=True, text=True, timeout=60)
                if done.returncode == 0 or "not running" not in done.stderr or time.time() > deadline:
                    break
                time.sleep(0.2)
            assert done.returncode == 0, f"rotd rotate failed: {done.stdout}{done.stderr}"
            assert cache.get_secret_value(rot) == before, "served from the cache within the TTL"
            assert cache.refresh_now(rot) is True, "refresh_now failed (see log above)"
            after = cache.get_secret_info(rot)
            assert after.version_id == "sdk-rot-1", after
            assert after.secret_value != before, "the value did not change"
            r = admin.get_secret_value_with_options(kms.GetSecretValueRequest(secret_name=rot), RT)
            assert r.body.secret_data == after.secret_value and r.body.version_id == "sdk-rot-1", r.body.to_map()
            r = admin.get_secret_value_with_options(
                kms.GetSecretValueRequest(secret_name=rot, version_stage="ACSPrevious"), RT
            )
            assert r.body.secret_data == before, "ACSPrevious holds the old value"
            step("[cache] `rotd rotate` + refresh_now -> rotated value (old one is ACSPrevious)")
        return cache, rds
    except BaseException:
        cache.close()
        raise


def mysql_login(cred, database="shop"):
    """Logs in to the test MariaDB (ROTD_MYSQL_HOST/PORT) with an Rds value; returns CURRENT_USER()."""
    import pymysql

    conn = pymysql.connect(
        host=os.environ["ROTD_MYSQL_HOST"],
        port=int(os.environ["ROTD_MYSQL_PORT"]),
        user=cred["AccountName"],
        password=cred["AccountPassword"],
        database=database,
        connect_timeout=10,
        read_timeout=20,
    )
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT CURRENT_USER(), DATABASE()")
            user, db = cur.fetchone()
            assert db == database, (db, database)
            return user
    finally:
        conn.close()


def run_rds_rotation():
    """A real database-backed Rds secret (app/db, dual accounts on MariaDB, rotated once already by
    `rotd rotate`): the caching client reads it, the credential logs in; RotateSecret through the plain SDK
    moves ACSCurrent to the other account; refresh_now serves it and both accounts still log in."""
    from alibabacloud_secretsmanager_client_v2.secret_manager_cache_client_builder import (
        SecretManagerCacheClientBuilder,
    )
    from alibabacloud_secretsmanager_client_v2.service.default_secret_manager_client_builder import (
        DefaultSecretManagerClientBuilder,
    )

    name = "app/db"
    admin = client(ADMIN, "v3")
    secret_client = DefaultSecretManagerClientBuilder.standard().add_config(config(RO, "v3")).build()
    cache = (
        SecretManagerCacheClientBuilder.new_cache_client_builder(secret_client)
        .with_secret_ttl(name, 3600 * 1000)
        .build()
    )
    try:
        first = rds_value(cache.get_secret_value(name))
        info = cache.get_secret_info(name)
        assert info.secret_type == "Rds", info
        first_version = info.version_id
        assert first_version, info
        user = mysql_login(first)
        assert user.split("@")[0] == first["AccountName"], (user, first["AccountName"])
        step("[rds-rotation] caching client reads app/db; the credential logs in to MariaDB")

        new_version = "sdk-rds-rot-2"
        r = admin.rotate_secret_with_options(kms.RotateSecretRequest(secret_name=name, version_id=new_version), RT)
        assert r.body.version_id == new_version and r.body.secret_name == name, r.body.to_map()
        deadline = time.time() + 120
        while True:
            r = admin.list_secret_version_ids_with_options(kms.ListSecretVersionIdsRequest(secret_name=name), RT)
            current = [
                v.version_id
                for v in r.body.version_ids.version_id
                if "ACSCurrent" in (v.version_stages.version_stage or [])
            ]
            if current == [new_version]:
                break
            assert time.time() < deadline, f"rotation did not complete: {r.body.to_map()}"
            time.sleep(0.5)
        step("[rds-rotation] RotateSecret(VersionId) -> new version becomes ACSCurrent (ListSecretVersionIds)")

        assert rds_value(cache.get_secret_value(name)) == first, "served from the cache within the TTL"
        assert cache.refresh_now(name) is True, "refresh_now failed (see log above)"
        after = cache.get_secret_info(name)
        assert after.version_id == new_version, after.version_id
        second = rds_value(after.secret_value)
        assert second["AccountName"] != first["AccountName"], "dual mode: the other account becomes current"
        assert second["AccountPassword"] != first["AccountPassword"], "the password did not change"
        user = mysql_login(second)
        assert user.split("@")[0] == second["AccountName"], (user, second["AccountName"])
        step("[rds-rotation] refresh_now -> new credential (the other account), which logs in")

        r = admin.get_secret_value_with_options(
            kms.GetSecretValueRequest(secret_name=name, version_stage="ACSPrevious"), RT
        )
        assert r.body.version_id == first_version, r.body.to_map()
        assert rds_value(r.body.secret_data) == first, "ACSPrevious holds the first credential"
        user = mysql_login(first)
        assert user.split("@")[0] == first["AccountName"], (user, first["AccountName"])
        step("[rds-rotation] the previous credential (ACSPrevious) still logs in (dual accounts)")
    finally:
        cache.close()


def run_quickstart():
    """The vendor's quickstart, word by word: the application's client knows only the endpoint, the CA
    file and its access key (no region, no signature options), and reads the secret the operator created
    with the initial version left at its default."""
    key = (os.environ["ROTD_QS_AK_ID"], os.environ["ROTD_QS_AK_SECRET"])
    value = os.environ["ROTD_QS_VALUE"]
    name = "app/quickstart/db-password"
    cfg = open_api_models.Config(
        access_key_id=key[0], access_key_secret=key[1], endpoint=ENDPOINT, protocol="https"
    )
    cfg.ca = CA
    c = Client(cfg)
    r = c.get_secret_value(kms.GetSecretValueRequest(secret_name=name))
    assert r.body.secret_data == value, "the value comes back as stored"
    assert r.body.version_id == "v1", r.body.version_id
    assert r.body.version_stages.version_stage == ["ACSCurrent"], r.body.to_map()
    assert r.body.secret_type == "Generic" and r.body.secret_data_type == "text", r.body.to_map()
    step("[quickstart] GetSecretValue -> the value, VersionId v1, ACSCurrent")

    # AliyunKMSSecretUserAccess is every read: describe, list, versions, batch, random password.
    d = c.describe_secret(kms.DescribeSecretRequest(secret_name=name, fetch_tags="true"))
    assert d.body.description == "the quickstart's database password", d.body.to_map()
    assert [(t.tag_key, t.tag_value) for t in d.body.tags.tag] == [("env", "prod")], d.body.to_map()
    listed = c.list_secrets(kms.ListSecretsRequest(page_size=100))
    assert name in [s.secret_name for s in listed.body.secret_list.secret], listed.body.to_map()
    v = c.list_secret_version_ids(kms.ListSecretVersionIdsRequest(secret_name=name))
    assert [x.version_id for x in v.body.version_ids.version_id] == ["v1"], v.body.to_map()
    b = c.batch_get_secret_value(
        kms.BatchGetSecretValueRequest(secrets_list=[kms.BatchGetSecretValueRequestSecretsList(secret_name=name)])
    )
    assert b.status_code == 200, b.status_code
    assert len(c.get_random_password(kms.GetRandomPasswordRequest()).body.random_password) == 32
    step("[quickstart] the preset also reads: DescribeSecret (tag, description), ListSecrets, versions, batch, GetRandomPassword")

    # Reads only: no writes, and nothing outside app/*.
    expect_client_error(
        lambda: c.put_secret_value(kms.PutSecretValueRequest(secret_name=name, version_id="v2", secret_data="x")),
        "Forbidden.NoPermission",
        403,
    )
    step("[quickstart] the preset cannot write (PutSecretValue -> Forbidden.NoPermission)")


PARTS = {
    "quickstart": run_quickstart,
    "v3": lambda: run_kms("v3"),
    "v2": lambda: run_kms("v2"),
    "rds-v3": lambda: run_rds("v3"),
    "rds-v2": lambda: run_rds("v2"),
    "cache": lambda: run_cache_client()[0].close(),
    "rds-rotation": run_rds_rotation,
}


def main():
    which = sys.argv[1:] or list(PARTS)
    try:
        for w in which:
            if w not in PARTS:
                raise SystemExit(f"unknown part {w}; known: {', '.join(PARTS)}")
            PARTS[w]()
    except ClientException as e:
        traceback.print_exc()
        print(f"FAILED: ClientException code={e.code} status={e.status_code} data={e.data}", flush=True)
        return 1
    except Exception:
        traceback.print_exc()
        print("FAILED", flush=True)
        return 1
    for k in sorted(KNOWN_INCOMPATIBILITIES):
        print("KNOWN INCOMPATIBILITY (tolerated): " + k, flush=True)
    print(f"PASSED {len(COVERED)} checks", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
