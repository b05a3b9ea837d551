"""The chart's auth.* values: the web pods' environment, the PEM Secret, the JWKS
egress, the schema; the jobs never see any of it."""

from __future__ import annotations

import base64
from typing import Any

import helm_python
import pytest

from service.config import Settings
from tests.deploy import helm
from tests.deploy.k8s import Obj, containers, env_value, pod_templates
from tests.identity import ec_key, public_pem

PEM = public_pem(ec_key())
JWT = {
    "mode": "jwt",
    "issuer": "https://id.example.com/realms/trading",
    "audience": "stock-trading",
    "jwksUrl": "https://id.example.com/realms/trading/protocol/openid-connect/certs",
}
AUTH_VARIABLES = {
    "AUTH_MODE",
    "AUTH_ISSUER",
    "AUTH_AUDIENCE",
    "AUTH_JWKS_URL",
    "AUTH_JWT_PUBLIC_KEY",
    "AUTH_USER_CLAIM",
    "AUTH_ALGORITHMS",
    "USER_RATE_LIMIT",
}


def _release(auth: dict[str, Any]) -> helm.Release:
    values = {"auth": auth}
    return helm.Release(name=repr(auth), values=values, templates=helm.render(values))


def _web(release: helm.Release) -> Obj:
    deployment = release.get("Deployment", "stock-trading")
    return containers(deployment["spec"]["template"]["spec"])[0]


def _env_names(container: Obj) -> set[str]:
    return {variable["name"] for variable in container.get("env", [])}


def test_auth_is_off_by_default(default_release: helm.Release) -> None:
    for obj in default_release.objects:
        for _, spec in pod_templates(obj):
            for container in containers(spec):
                assert _env_names(container) & AUTH_VARIABLES == set()
    assert "templates/auth-secret.yaml" not in default_release.templates


def test_jwt_mode_reaches_the_web_pods_only_and_the_service_accepts_it() -> None:
    release = _release({**JWT, "userRateLimit": "5/second"})
    web = _web(release)
    env = {name: env_value(web, name) for name in _env_names(web) & AUTH_VARIABLES}
    assert env == {
        "AUTH_MODE": "jwt",
        "AUTH_ISSUER": JWT["issuer"],
        "AUTH_AUDIENCE": JWT["audience"],
        "AUTH_JWKS_URL": JWT["jwksUrl"],
        "AUTH_USER_CLAIM": "sub",
        "AUTH_ALGORITHMS": "RS256,ES256",
        "USER_RATE_LIMIT": "5/second",
    }
    settings = Settings.from_env({name: value for name, value in env.items() if value})
    assert (settings.auth_mode, settings.user_rate_limit) == ("jwt", "5/second")

    # Jobs build the app too: none of them gets an auth setting, so none can fail on one.
    jobs = [*release.of_kind("CronJob"), *release.of_kind("Job")]
    assert jobs
    for job in jobs:
        for _, spec in pod_templates(job):
            for container in containers(spec):
                assert _env_names(container) & AUTH_VARIABLES == set(), job["metadata"]["name"]
    for config_map in release.of_kind("ConfigMap"):
        assert set(config_map.get("data", {})) & AUTH_VARIABLES == set()


def test_the_network_policy_lets_the_pods_reach_the_jwks_host() -> None:
    egress = {
        "ports": [{"port": 8443, "protocol": "TCP"}],
        "to": [{"ipBlock": {"cidr": "203.0.113.0/24"}}],
    }
    with_jwks = _release({**JWT, "jwksEgress": egress})
    rules = with_jwks.get("NetworkPolicy", "stock-trading")["spec"]["egress"]
    assert egress in rules
    default_rules = helm.release("default").get("NetworkPolicy", "stock-trading")["spec"]["egress"]
    assert len(rules) == len(default_rules) + 1


def test_a_pem_key_is_kept_in_a_secret_of_its_own() -> None:
    release = _release({**JWT, "jwksUrl": "", "publicKey": PEM})
    secret = release.get("Secret", "stock-trading-auth")
    assert base64.b64decode(secret["data"]["public-key.pem"]).decode() == PEM
    web = _web(release)
    reference = next(v for v in web["env"] if v["name"] == "AUTH_JWT_PUBLIC_KEY")
    assert reference["valueFrom"]["secretKeyRef"] == {
        "name": "stock-trading-auth",
        "key": "public-key.pem",
    }
    assert "AUTH_JWKS_URL" not in _env_names(web)
    pod = release.get("Deployment", "stock-trading")["spec"]["template"]
    assert "checksum/auth" in pod["metadata"]["annotations"]  # a new key rolls the pods


def test_an_existing_secret_can_hold_the_pem_key() -> None:
    release = _release(
        {**JWT, "jwksUrl": "", "existingPublicKeySecret": {"name": "idp-key", "key": "tls.pem"}}
    )
    assert "templates/auth-secret.yaml" not in release.templates
    reference = next(v for v in _web(release)["env"] if v["name"] == "AUTH_JWT_PUBLIC_KEY")
    assert reference["valueFrom"]["secretKeyRef"] == {"name": "idp-key", "key": "tls.pem"}


@pytest.mark.parametrize(
    "auth",
    [
        {"mode": "oauth"},
        {**JWT, "issuer": ""},
        {**JWT, "audience": ""},
        {**JWT, "jwksUrl": ""},  # no key at all
        {**JWT, "publicKey": PEM},  # two keys
        {**JWT, "jwksUrl": "idp.example.com/certs"},
        {**JWT, "jwksUrl": "", "publicKey": "not a key"},
        {**JWT, "algorithms": ["HS256"]},
        {**JWT, "algorithms": []},
        {**JWT, "userRateLimit": "lots"},
        {**JWT, "userClaim": ""},
        {**JWT, "jwksEgress": {"ports": [{"port": 443, "protocol": "ICMP"}]}},
        {"mode": "none", "scopes": ["read"]},
    ],
    ids=repr,
)
def test_schema_rejects_bad_auth_values(auth: dict[str, Any]) -> None:
    with pytest.raises(helm_python.HelmValuesError):
        helm.render({"auth": auth})
