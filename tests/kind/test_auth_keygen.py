"""auth's signing key on a cluster that Argo CD syncs from git alone.

The auth Deployment mounts the Secret `auth-signing-key`, which git must not hold. Argo CD applies
only what the overlay renders, so the render itself must hold an object that creates the Secret
before the Deployment: the `auth-keygen` Job. Its key-creation function is tested here against a
fake CoreV1Api (the real client's exception and model types, no cluster).
"""

from __future__ import annotations

import base64
import threading

import pytest
from kubernetes.client import V1ObjectMeta, V1Secret
from kubernetes.client.exceptions import ApiException

from kind_manifests import OVERLAYS
from services.auth import keygen
from services.common import auth as common_auth

ARGO_PHASES = ["PreSync", "Sync", "PostSync"]


def argo_order(obj: dict) -> tuple[int, int]:
    """(phase, wave): the order in which Argo CD applies an object (docs: sync phases and waves)."""
    annotations = obj["metadata"].get("annotations", {})
    phase = annotations.get("argocd.argoproj.io/hook", "Sync")
    return ARGO_PHASES.index(phase), int(annotations.get("argocd.argoproj.io/sync-wave", "0"))


def mounted_secrets(deployment: dict) -> set[str]:
    return {v["secret"]["secretName"] for v in deployment["spec"]["template"]["spec"].get("volumes", [])
            if "secret" in v}


def secret_creators(objects: list[dict], secret: str) -> list[dict]:
    """Objects in the render that would bring `secret` into being: the Secret itself, or a Job whose
    service account may create Secrets and get this one, running the project's key generator."""
    roles = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Role"}
    granted: dict[str, list[dict]] = {}
    for b in (o for o in objects if o["kind"] == "RoleBinding" and o["roleRef"]["kind"] == "Role"):
        for subject in b.get("subjects", []):
            if subject["kind"] == "ServiceAccount":
                granted.setdefault(subject["name"], []).extend(roles.get(b["roleRef"]["name"], {}).get("rules", []))
    creators = [o for o in objects if o["kind"] == "Secret" and o["metadata"]["name"] == secret]
    for job in (o for o in objects if o["kind"] == "Job"):
        spec = job["spec"]["template"]["spec"]
        rules = [r for r in granted.get(spec.get("serviceAccountName", "default"), []) if "secrets" in r["resources"]]
        can_create = any("create" in r["verbs"] for r in rules)
        can_get = any("get" in r["verbs"] and secret in r.get("resourceNames", [secret]) for r in rules)
        runs_keygen = any(c.get("command", [])[-1:] == ["services.auth.keygen"] for c in spec["containers"])
        if can_create and can_get and runs_keygen:
            creators.append(job)
    return creators


@pytest.mark.parametrize("overlay", ["base", *OVERLAYS])
def test_git_alone_creates_the_signing_key_before_auth(rendered, overlay):
    objects = rendered[overlay]
    (auth,) = [o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "auth"]
    assert keygen.SECRET_NAME in mounted_secrets(auth)
    creators = secret_creators(objects, keygen.SECRET_NAME)
    assert creators, "no object in the render creates the Secret auth's pods mount: Argo CD alone leaves auth in " \
                     "ContainerCreating"
    # ... and not by carrying the private key in git.
    assert all(c["kind"] == "Job" for c in creators), "a private key is in the manifests"
    (job,) = creators
    assert argo_order(job) < argo_order(auth)
    annotations = job["metadata"]["annotations"]
    # A hook, re-created on each sync (a Job's template is immutable), and not left behind.
    assert annotations["argocd.argoproj.io/hook"] == "Sync"
    assert annotations["argocd.argoproj.io/hook-delete-policy"] == "BeforeHookCreation"
    assert 0 < job["spec"]["ttlSecondsAfterFinished"] <= 3600
    assert job["spec"]["template"]["spec"]["restartPolicy"] in ("Never", "OnFailure")
    # What the Job needs exists before it does.
    account = job["spec"]["template"]["spec"]["serviceAccountName"]
    needed = [o for o in objects if o["metadata"]["name"] in (account, "auth-keygen-egress-apiserver")
              and o["kind"] in ("ServiceAccount", "Role", "RoleBinding", "NetworkPolicy")]
    assert {o["kind"] for o in needed} == {"ServiceAccount", "Role", "RoleBinding", "NetworkPolicy"}
    assert all(argo_order(o) < argo_order(job) for o in needed)


def test_the_keygen_job_has_the_least_privilege(rendered):
    objects = rendered["istio-all"]
    (job,) = [o for o in objects if o["kind"] == "Job" and o["metadata"]["name"] == "auth-keygen"]
    pod = job["spec"]["template"]
    account = pod["spec"]["serviceAccountName"]
    (role,) = [o for o in objects if o["kind"] == "Role" and o["metadata"]["name"] == account]
    # get is limited to the one Secret by name; create cannot be (RBAC authorizes a create before the
    # name is known), so it is the only other verb: no update/patch/delete/list/watch.
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["secrets"], "resourceNames": [keygen.SECRET_NAME], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]},
    ]
    assert not [o for o in objects if o["kind"] in ("ClusterRole", "ClusterRoleBinding")
                and account in str(o)]
    # The account's token is in the Job's pod only.
    users = [o["metadata"]["name"] for o in objects if o["kind"] in ("Deployment", "StatefulSet", "Job")
             and o["spec"]["template"]["spec"].get("serviceAccountName") == account]
    assert users == ["auth-keygen"]
    (sa,) = [o for o in objects if o["kind"] == "ServiceAccount" and o["metadata"]["name"] == account]
    assert sa["automountServiceAccountToken"] is False and pod["spec"]["automountServiceAccountToken"] is True
    # No sidecar: an injected istio-proxy would keep the pod running and the Job would never complete.
    assert pod["metadata"]["labels"]["sidecar.istio.io/inject"] == "false"


# --- the key-creation function, against a fake API ------------------------------------------------------

class FakeCoreV1:
    """CoreV1Api's two Secret calls with the API server's semantics: 404 on a missing Secret, 409 on
    a second create of the same name; `stringData` is stored base64-encoded in `data`."""

    def __init__(self, status_on_read: int | None = None):
        self.secrets: dict[tuple[str, str], V1Secret] = {}
        self.lock = threading.Lock()
        self.creates = 0
        self.status_on_read = status_on_read

    def read_namespaced_secret(self, name, namespace):
        if self.status_on_read:
            raise ApiException(status=self.status_on_read, reason="Forbidden")
        with self.lock:
            if (namespace, name) not in self.secrets:
                raise ApiException(status=404, reason="Not Found")
            return self.secrets[(namespace, name)]

    def create_namespaced_secret(self, namespace, body):
        assert body["metadata"]["namespace"] == namespace
        data = {k: base64.b64encode(v.encode()).decode() for k, v in body["stringData"].items()}
        with self.lock:
            self.creates += 1
            key = (namespace, body["metadata"]["name"])
            if key in self.secrets:
                raise ApiException(status=409, reason="AlreadyExists")
            self.secrets[key] = V1Secret(metadata=V1ObjectMeta(name=key[1], namespace=namespace), data=data)


def stored_pem(api: FakeCoreV1, namespace="cloudmart") -> bytes:
    return base64.b64decode(api.secrets[(namespace, keygen.SECRET_NAME)].data[keygen.KEY_FILE])


def test_creates_a_key_the_auth_service_loads_then_keeps_it(tmp_path):
    api = FakeCoreV1()
    assert keygen.ensure_signing_key(api, "cloudmart") == "created"
    pem = stored_pem(api)
    # The auth service reads the mounted file; the key it loads is the stored one, RSA 2048.
    path = common_auth.key_path(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_bytes(pem)
    key = common_auth.load_or_create_signing_key(tmp_path)
    assert key.key_size == 2048 and path.read_bytes() == pem
    # A second run (another sync, a re-run of `up`) never replaces the key.
    assert keygen.ensure_signing_key(api, "cloudmart") == "exists"
    assert stored_pem(api) == pem and api.creates == 1


def test_a_concurrent_creator_wins_and_its_key_is_kept():
    api = FakeCoreV1()
    winner = keygen.signing_key_secret("cloudmart")
    original_read = api.read_namespaced_secret

    def read_then_lose_the_race(name, namespace):
        try:
            return original_read(name, namespace)
        finally:                       # another Job creates the Secret between our read and our create
            if (namespace, name) not in api.secrets:
                api.create_namespaced_secret(namespace, winner)

    api.read_namespaced_secret = read_then_lose_the_race
    assert keygen.ensure_signing_key(api, "cloudmart") == "created-concurrently"
    assert stored_pem(api).decode() == winner["stringData"][keygen.KEY_FILE]


def test_parallel_runs_leave_exactly_one_key():
    api = FakeCoreV1()
    barrier = threading.Barrier(4)
    outcomes = []

    def run():
        barrier.wait()
        outcomes.append(keygen.ensure_signing_key(api, "cloudmart"))

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(outcomes) == 4 and outcomes.count("created") == 1
    assert set(outcomes) <= {"created", "created-concurrently", "exists"}
    assert len(api.secrets) == 1


def test_errors_are_reported_and_nothing_is_overwritten():
    with pytest.raises(keygen.KeygenError, match="HTTP 403"):
        keygen.ensure_signing_key(FakeCoreV1(status_on_read=403), "cloudmart")
    api = FakeCoreV1()
    api.secrets[("cloudmart", keygen.SECRET_NAME)] = V1Secret(data={"other": "eA=="})
    with pytest.raises(keygen.KeygenError, match="without jwt-signing-key.pem"):
        keygen.ensure_signing_key(api, "cloudmart")
    assert api.creates == 0 and api.secrets[("cloudmart", keygen.SECRET_NAME)].data == {"other": "eA=="}
    with pytest.raises(ValueError, match="namespace"):
        keygen.ensure_signing_key(api, "")
    with pytest.raises(ValueError, match=">= 2048"):
        keygen.new_private_key_pem(1024)


def test_main_exit_status_and_one_line_messages(monkeypatch, capsys):
    import kubernetes

    api = FakeCoreV1()
    monkeypatch.setattr(kubernetes.config, "load_incluster_config", lambda: None)
    monkeypatch.setattr(kubernetes.client, "CoreV1Api", lambda: api)
    monkeypatch.setenv("POD_NAMESPACE", "cloudmart")
    assert keygen.main([]) == 0 and keygen.main([]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == ["keygen: Secret cloudmart/auth-signing-key: created", "keygen: Secret cloudmart/auth-signing-key: exists"]
    api.status_on_read = 500
    assert keygen.main([]) == 1
    assert capsys.readouterr().err.count("\n") == 1
    assert keygen.main(["--force"]) == 2


def test_up_creates_the_same_secret_as_the_job():
    from cluster import kind_target as kt

    secret = kt.auth_signing_key_secret()
    assert secret["metadata"]["name"] == keygen.SECRET_NAME and secret["metadata"]["namespace"] == kt.NAMESPACE
    assert list(secret["stringData"]) == [keygen.KEY_FILE]
    plan = [" ".join(c) for c in kt.plan("kong")]
    secret_step = next(i for i, c in enumerate(plan) if "Secret auth-signing-key" in c)
    delete_step = next(i for i, c in enumerate(plan) if f"delete job {kt.KEYGEN_JOB}" in c)
    everything = next(i for i, c in enumerate(plan) if "everything else" in c)
    assert secret_step < delete_step < everything
