"""kubeemu: an emulated Kubernetes API server (built on kmock) and a local pod runner, for tests.

USAGE
=====

In your folder's conftest.py (pytest refuses ``pytest_plugins`` outside the top-level conftest)::

    from kubeemu.fixtures import kube, pod_runner  # noqa: F401  (the fixtures)

Operator test (the real kopf, in a thread, against the emulator)::

    from kopf.testing import KopfRunner
    from kubeemu.fixtures import PROJECT_CRDS          # <repo>/manifests/crds

    def test_prep_creates_job(kube):                   # KUBECONFIG already points at the emulator
        kube.apply(PROJECT_CRDS)                       # CRDs: served at once, schema + CEL enforced
        with KopfRunner(["run", "-A", "--standalone", "-m", "sft_operator.handlers"]) as runner:
            kube.create({"apiVersion": "sft.dev/v1alpha1", "kind": "SFTDataPrep",
                         "metadata": {"name": "p", "namespace": "default"}, "spec": {...}})
            job = kube.wait_for_object("jobs", "p-prep", timeout=10)          # 404 = "not yet"
            kube.patch_status("jobs", "p-prep", {"succeeded": 1, "conditions": [...]})
            done = kube.wait_for_object("sftdatapreps", "p", lambda o: o.get("status", {}).get("phase"))
        assert runner.exit_code == 0, runner.output

E2E (pods really run, as local subprocesses)::

    def test_e2e(kube, pod_runner, tmp_path):
        pod_runner.path_map["/data"] = tmp_path            # container path prefix -> local dir
        pod_runner.executables["torchrun"] = [sys.executable, "-m", "torch.distributed.run"]
        ...  # sft-prep / sft-train resolve to the venv's scripts automatically (next to sys.executable)
        kube.wait_for_object("sftdatapreps", "p", lambda o: ..., timeout=60)
        print(kube.pod_log("p-prep-0-abcde"))            # or GET .../pods/NAME/log over HTTP

``kube`` is a :class:`KubeEmulator`: ``.url`` (plain http://127.0.0.1:PORT), ``.kubeconfig()`` /
``.write_kubeconfig(path)``, ``.apply(path|dir|dict|list)``, ``.create(body)``,
``.get(kind, name, namespace="default")``, ``.get_or_none(...)``, ``.list(kind, namespace=None,
label_selector=None, field_selector=None)``, ``.patch(kind, name, patch, content_type=merge,
subresource=None)``, ``.patch_status(kind, name, status_patch)``, ``.replace(body)``,
``.delete(kind, name, propagation=None)``, ``.create_namespace(name)``, ``.install_crd(doc)``,
``.install_pytorchjob_crd()``, ``.uninstall_crd(name)``, ``.events(namespace=None,
involved_name=None)``, ``.pod_log(name)``,
``.wait_for(fn, timeout)``, ``await .async_wait_for(fn, timeout)``, ``.wait_for_object(kind, name,
predicate, timeout)``, ``.wait_for_deletion(kind, name)``. ``kind`` is a plural, kind or short name
(add ``api_version=`` when ambiguous, e.g. core vs events.k8s.io ``events``). Helpers raise
:class:`ApiError` (``.code``, ``.reason``, ``.status()``) exactly where the HTTP API would answer
with an error. ``kube.requests`` is the kmock handler: iterate it to assert on the requests made,
or inject faults with kmock's DSL, e.g. ``kube.requests['post', kmock.resource('batch', 'v1',
'jobs')] << 500`` (user reactions take priority over the emulation). ``KubeEmulator(...)`` also
works without pytest (``with KubeEmulator(crds=[...]) as kube:``), e.g. in benchmarks
(``record_requests=False`` keeps memory flat), and ``KubeEmulator(kopf_peering=True)`` installs
kopf's peering CRDs.

``pod_runner`` is a :class:`~kubeemu.podrunner.PodRunner`: ``.executables`` (command name -> path or
argv prefix), ``.path_map`` (container path prefix -> local dir), ``.extra_env``, ``.images`` (image ->
entrypoint for containers without ``command``), ``.config.pvc_root``, ``.kill_pod(name)`` (SIGKILL a
running pod's processes: it fails with exit code 137, as on a crashed node); see :mod:`kubeemu.podrunner`.

JobSet and Kubeflow Trainer v2 (see :mod:`kubeemu.jobset`, :mod:`kubeemu.trainer` for the facts and
their sources)::

    kube.install_jobset_crd()          # jobsets.jobset.x-k8s.io (v1alpha2)
    kube.install_trainer_crds()        # JobSet + trainjobs/clustertrainingruntimes/trainingruntimes
    kube.create(cluster_training_runtime)        # the runtime a TrainJob's runtimeRef names
    kube.create(trainjob)                        # -> JobSet <name> -> Jobs <name>-node-0 -> pods
    pods = kube.list("pods", "default", label_selector="jobset.sigs.k8s.io/jobset-name=NAME")
    pod_runner.kill_pod(pods[1]["metadata"]["name"])   # the group restarts if maxRestarts allows
    kube.wait_for_object("jobsets", "NAME", lambda o: o["status"]["restarts"] == 1)

WHAT IS EMULATED
================

- Discovery: ``/api``, ``/api/v1``, ``/apis``, ``/apis/G``, ``/apis/G/V``, ``/version``, live: a CRD
  created or deleted at runtime adds or removes its resource (kopf notices through its CRD watch).
- Built-ins: namespaces, configmaps, secrets, serviceaccounts, pods (+``/status``, ``/log``),
  services, persistentvolumeclaims, events (core v1 and events.k8s.io/v1), batch/v1 jobs,
  coordination leases, apiextensions.k8s.io/v1 customresourcedefinitions; every CR kind of an
  installed CRD (all served versions, no conversion).
- CRUD, list and watch (``watch=true`` streaming with ``resourceVersion`` resumption, 410 Expired
  when too old, ``sendInitialEvents`` + bookmark, ``timeoutSeconds``), label and field selectors on
  list and watch (selector transitions turn into ADDED/DELETED for that watcher), deletecollection,
  ``dryRun=All``.
- Metadata: uid, global resourceVersion (no-op writes change nothing and emit nothing), generation
  (spec changes only), creationTimestamp, generateName, deletionTimestamp + finalizers, name/label/
  annotation/finalizer/ownerReference validation, namespaces that must exist (and cascade on delete).
- Status subresource isolation; patch types merge, JSON (with ``test``), strategic (merge by ``name``
  for named lists), apply (approximated as merge); 409 AlreadyExists / Conflict (stale
  resourceVersion in PUT or in a patch's metadata), 404, 422 Invalid with ``details.causes``.
- CRD schema: pruning, defaults, type/enum/bounds/lengths/pattern/items/properties/required/
  nullable/additionalProperties/int-or-string/allOf/anyOf/oneOf/not, and ``x-kubernetes-validations``
  in the CEL subset documented in :mod:`kubeemu.cel` (transition rules with ``oldSelf`` included).
- ServiceAccount admission: a pod naming a ServiceAccount missing from its namespace is refused (403,
  the apiserver's message; ``default`` is taken to exist); the Job/PyTorchJob controllers then create
  no pod for it, as the real ones record FailedCreate.
- Garbage collection by ownerReferences (Background, Foreground, Orphan; Jobs default to Orphan as
  on a real apiserver).
- Built-in kinds are validated against the official strict OpenAPI schemas of Kubernetes 1.33 (from
  ``kubernetes-validate``): unknown or mistyped fields are a 422 naming the field. Jobs also get the
  checks operators trip over: ``restartPolicy`` must be Never/OnFailure, Indexed needs
  ``completions``, ``completionMode``/``completions``/``selector`` are immutable and the pod template
  is immutable unless the Job is suspended and never started.
- Built-in defaults that matter: Job selector/labels (``batch.kubernetes.io/job-name``...), Job spec
  defaults (backoffLimit 6, parallelism 1...), Pod and Namespace initial status.
- Add-ons, with the CRDs written from their real Go types (embedded Kubernetes types from the 1.33
  OpenAPI via :mod:`kubeemu.openapi_schema`) and their admission webhooks' defaults and main checks:
  JobSet ``jobset.x-k8s.io/v1alpha2`` (:mod:`kubeemu.jobset`) and Kubeflow Trainer v2
  ``trainer.kubeflow.org/v1alpha1`` TrainJob, ClusterTrainingRuntime, TrainingRuntime
  (:mod:`kubeemu.trainer`); their controllers run in the pod runner.
- kopf peering: ``KubeEmulator(kopf_peering=True)`` (or applying the CRDs) plus a ``KopfPeering`` /
  ``ClusterKopfPeering`` object named like ``--peering=NAME``: kopf then runs with peering (without
  the object it stays paused, as on a real cluster).

WHAT IS NOT EMULATED
====================

Authentication and RBAC (any token is accepted), admission webhooks and admission plugins (Kueue,
LimitRange, quotas), full CEL (unsupported rules are logged and skipped), CEL cost limits,
``messageExpression``, list-type/map-key semantics, SSA field management and conflicts,
aggregated discovery (v2), version conversion, pagination (``limit`` is ignored; everything comes in
one page), protobuf, ``fieldValidation=Strict`` (unknown CR fields are pruned silently, the
default "Warn" behaviour, without warning headers), semantic validation of built-in kinds beyond
their OpenAPI schema and the Job rules above, controllers other than the pod runner's (no
Deployment/ReplicaSet/StatefulSet controllers), graceful pod termination periods, scheduling,
nodes, services networking (beyond pod DNS names under headless Services -> 127.0.0.1, see
:mod:`kubeemu.localnet`), images.

Not modelled of JobSet: ``RestartJob``/``RestartJobAndIgnoreMaxRestarts`` (feature-gated per-Job
restarts; played as a group restart), ``InPlaceRestart`` and its agent, ``startupPolicy: InOrder`` and
``dependsOn`` (all replicated Jobs start at once), ``coordinator`` beyond its label, exclusive
placement (``alpha.jobset.sigs.k8s.io/exclusive-topology``, node selectors, taints),
``volumeClaimPolicies`` (accepted, no PVCs made), ElasticJobSet scaling, the pod webhook, the
``jobset.sigs.k8s.io/priority`` label, metrics, ``managedBy`` values other than the built-in
controller (left alone, as the real one does), the webhook's update checks (immutability is only the
CRD's ``self == oldSelf`` rules), and the Kubernetes defaults inside embedded pod templates (e.g.
``ports[].protocol: TCP``). Conditions emit Events only for Failed/Completed/Restarting.

Not modelled of Trainer: runtimes other than ``torch`` and plain (no MPI/JAX/XGBoost/Flux plugins,
no torchtune command rewriting), initializers (``dataset-initializer``/``model-initializer`` jobs
are built from the runtime unchanged; ``initializer.*`` is not applied), gang scheduling
(``podGroupPolicy`` coscheduling/Volcano: no PodGroups, no scheduler labels), runtime snapshots (the
JobSet is built from the runtime as it is at build time and rebuilt only while suspended), the
``trainer.kubeflow.org/resource-in-use`` finalizer on runtimes, the alpha ``trainerStatus`` (schema
only; nothing writes it), Kueue/MultiKueue (``managedBy: kueue.x-k8s.io/multikueue`` is left alone),
the deprecation warning of runtimes labelled ``trainer.kubeflow.org/support: deprecated``, the
runtime webhooks' checks, and server-side apply of the JobSet (it is created, or replaced while
suspended). TrainJob status has no restart count (as in Trainer): read the JobSet's ``status.restarts``.
"""

from .emulator import KubeEmulator, WaitTimeout, load_manifests
from .errors import ApiError
from .podrunner import PodRunner

__all__ = ["ApiError", "KubeEmulator", "PodRunner", "WaitTimeout", "load_manifests"]
