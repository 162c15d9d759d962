#!/usr/bin/env bash
# End-to-end test on a throwaway kind cluster (`make e2e-kind`):
#   1. create a kind cluster (pinned node image),
#   2. build the operator, prep and CPU-trainer images and load them into the cluster,
#   3. install Kubeflow Trainer v2 (TrainJob/ClusterTrainingRuntime CRDs, controller and the JobSet it
#      runs on; pinned manifests), so the SFTRun runs as a TrainJob on the chart's runtime
#      (BACKEND=pytorchjob installs the v1 training-operator instead and runs a PyTorchJob),
#   4. install the Helm chart watching one namespace,
#   5. apply the tiny pipeline: a PVC, a tiny base model, an SFTDataPrep, then an SFTRun (hf engine,
#      CPU) that waits for it,
#   6. wait for both CRs to reach Succeeded (failing fast on Failed/Stalled) and check their status,
#   7. collect logs and objects into $ARTIFACTS on failure, and delete the cluster.
#
# Needs: docker (with a running engine), kind, kubectl, helm, python3. Environment knobs:
#   KIND_CLUSTER (sft-e2e), KIND_NODE_IMAGE, TRAINER_REF (v2.3.0), BACKEND (trainjob|pytorchjob),
#   TRAINING_OPERATOR_REF, ARTIFACTS (out/kind-e2e),
#   E2E_TIMEOUT seconds per CR (900), KEEP_CLUSTER=1 to leave the cluster up for debugging,
#   SKIP_BUILD=1 to reuse already-built sft-*:e2e images.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
CLUSTER="${KIND_CLUSTER:-sft-e2e}"
# kind v0.29's default node image; pin the digest too via KIND_NODE_IMAGE=kindest/node:v1.33.1@sha256:...
NODE_IMAGE="${KIND_NODE_IMAGE:-kindest/node:v1.33.1}"
TRAINING_OPERATOR_REF="${TRAINING_OPERATOR_REF:-v1.9.0}"
TRAINER_REF="${TRAINER_REF:-v2.3.0}"
BACKEND="${BACKEND:-trainjob}"
ARTIFACTS="${ARTIFACTS:-$REPO/out/kind-e2e}"
TIMEOUT="${E2E_TIMEOUT:-900}"
TAG=e2e
SYSTEM_NS=sft-system
NS=sft-e2e
KUBECTL=(kubectl --context "kind-$CLUSTER")

log() { printf '\n==> %s\n' "$*" >&2; }
die() { printf 'e2e-kind: %s\n' "$*" >&2; exit 1; }

[[ "$BACKEND" == trainjob || "$BACKEND" == pytorchjob ]] || die "BACKEND must be trainjob or pytorchjob (got $BACKEND)"
for tool in docker kind kubectl helm python3; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is not installed (needs docker, kind, kubectl, helm, python3)"
done
docker info >/dev/null 2>&1 || die "no Docker engine reachable ('docker info' failed); start Docker first"

mkdir -p "$ARTIFACTS"

collect() {
  log "collecting diagnostics into $ARTIFACTS"
  "${KUBECTL[@]}" get all,pvc,configmaps,events -A -o wide >"$ARTIFACTS/objects.txt" 2>&1 || true
  "${KUBECTL[@]}" get sftdatapreps,sftruns,trainjobs,jobsets,pytorchjobs,jobs -n "$NS" -o yaml \
    >"$ARTIFACTS/crs.yaml" 2>&1 || true
  "${KUBECTL[@]}" describe sftdatapreps,sftruns,trainjobs,jobsets,pytorchjobs,jobs,pods -n "$NS" \
    >"$ARTIFACTS/describe.txt" 2>&1 || true
  "${KUBECTL[@]}" logs -n kubeflow-system deployment/kubeflow-trainer-controller-manager --tail=500 \
    >"$ARTIFACTS/trainer.log" 2>&1 || true
  "${KUBECTL[@]}" logs -n "$SYSTEM_NS" deployment/sft-sft-operator --tail=-1 >"$ARTIFACTS/operator.log" 2>&1 || true
  "${KUBECTL[@]}" logs -n kubeflow deployment/training-operator --tail=500 >"$ARTIFACTS/training-operator.log" 2>&1 || true
  for pod in $("${KUBECTL[@]}" get pods -n "$NS" -o name 2>/dev/null); do
    "${KUBECTL[@]}" logs -n "$NS" "$pod" --all-containers --tail=-1 >"$ARTIFACTS/${pod#pod/}.log" 2>&1 || true
  done
}

cleanup() {
  local status=$?
  if [[ $status -ne 0 ]]; then
    collect
    log "FAILED (exit $status); diagnostics in $ARTIFACTS"
  fi
  if [[ "${KEEP_CLUSTER:-0}" == "1" ]]; then
    log "keeping cluster $CLUSTER (kind delete cluster --name $CLUSTER)"
  else
    kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true
  fi
  exit $status
}
trap cleanup EXIT

log "creating kind cluster $CLUSTER ($NODE_IMAGE)"
kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true
kind create cluster --name "$CLUSTER" --image "$NODE_IMAGE" --wait 180s

if [[ "${SKIP_BUILD:-0}" != "1" ]]; then
  for image in operator prep trainer-cpu; do
    log "building sft-$image:$TAG"
    docker build -f "$REPO/images/$image/Dockerfile" -t "sft-$image:$TAG" "$REPO"
  done
fi
for image in operator prep trainer-cpu; do
  kind load docker-image "sft-$image:$TAG" --name "$CLUSTER"
done

if [[ "$BACKEND" == trainjob ]]; then
  # Trainer's manager overlay: its CRDs, controller, webhook and the JobSet controller it runs on
  # (kubeflow/trainer manifests/overlays/manager, namespace kubeflow-system).
  log "installing Kubeflow Trainer $TRAINER_REF (TrainJob, ClusterTrainingRuntime, JobSet)"
  "${KUBECTL[@]}" apply --server-side \
    -k "github.com/kubeflow/trainer.git/manifests/overlays/manager?ref=$TRAINER_REF"
  "${KUBECTL[@]}" wait --for=condition=Established crd/trainjobs.trainer.kubeflow.org \
    crd/clustertrainingruntimes.trainer.kubeflow.org crd/jobsets.jobset.x-k8s.io --timeout=120s
  "${KUBECTL[@]}" -n kubeflow-system rollout status deployment/kubeflow-trainer-controller-manager --timeout=300s
else
  log "installing the Kubeflow training operator $TRAINING_OPERATOR_REF (PyTorchJob)"
  "${KUBECTL[@]}" apply --server-side \
    -k "github.com/kubeflow/training-operator.git/manifests/overlays/standalone?ref=$TRAINING_OPERATOR_REF"
  "${KUBECTL[@]}" wait --for=condition=Established crd/pytorchjobs.kubeflow.org --timeout=120s
  "${KUBECTL[@]}" -n kubeflow rollout status deployment/training-operator --timeout=300s
fi

log "installing the sft-operator chart"
"${KUBECTL[@]}" create namespace "$NS"
helm --kube-context "kind-$CLUSTER" install sft "$REPO/charts/sft-operator" \
  --namespace "$SYSTEM_NS" --create-namespace \
  --values "$HERE/values-e2e.yaml" \
  --set "sftRun.backend=$BACKEND" \
  --wait --timeout 5m
if [[ "$BACKEND" == trainjob ]]; then
  # rendered because the cluster now serves trainer.kubeflow.org/v1alpha1
  "${KUBECTL[@]}" get clustertrainingruntime/sft-torch-distributed >/dev/null
fi
"${KUBECTL[@]}" wait --for=condition=Established crd/sftdatapreps.sft.dev crd/sftruns.sft.dev --timeout=60s

log "applying the tiny pipeline"
"${KUBECTL[@]}" -n "$NS" create configmap tiny-model-script --from-file="$HERE/make_tiny_model.py"
"${KUBECTL[@]}" -n "$NS" apply --validate=strict -f "$HERE/manifests/base-model.yaml"
"${KUBECTL[@]}" -n "$NS" wait --for=condition=Complete job/tiny-base-model --timeout=600s
"${KUBECTL[@]}" -n "$NS" apply --validate=strict -f "$HERE/manifests/pipeline.yaml"

# Poll until phase Succeeded; fail fast on Failed or Stalled=True instead of waiting out the timeout.
wait_succeeded() {
  local resource=$1 deadline=$((SECONDS + TIMEOUT)) phase stalled
  log "waiting for $resource to succeed (timeout ${TIMEOUT}s)"
  while ((SECONDS < deadline)); do
    phase=$("${KUBECTL[@]}" -n "$NS" get "$resource" -o jsonpath='{.status.phase}' 2>/dev/null || true)
    stalled=$("${KUBECTL[@]}" -n "$NS" get "$resource" \
      -o jsonpath='{.status.conditions[?(@.type=="Stalled")].status}' 2>/dev/null || true)
    case "$phase" in
      Succeeded) log "$resource Succeeded"; return 0 ;;
      Failed) die "$resource Failed: $("${KUBECTL[@]}" -n "$NS" get "$resource" -o jsonpath='{.status.message}')" ;;
    esac
    if [[ "$stalled" == "True" ]]; then
      die "$resource Stalled: $("${KUBECTL[@]}" -n "$NS" get "$resource" \
        -o jsonpath='{.status.conditions[?(@.type=="Stalled")].message}')"
    fi
    sleep 5
  done
  die "$resource did not succeed within ${TIMEOUT}s (phase: ${phase:-none})"
}
wait_succeeded sftdataprep/tiny
wait_succeeded sftrun/tiny

log "checking status and outputs"
"${KUBECTL[@]}" -n "$NS" get sftdataprep/tiny -o json >"$ARTIFACTS/dataprep.json"
"${KUBECTL[@]}" -n "$NS" get sftrun/tiny -o json >"$ARTIFACTS/run.json"
python3 "$HERE/check_pipeline.py" "$ARTIFACTS/dataprep.json" "$ARTIFACTS/run.json"
backend=$("${KUBECTL[@]}" -n "$NS" get sftrun/tiny -o jsonpath='{.status.backend}')
[[ "$backend" == "$BACKEND" ]] || die "sftrun/tiny ran on backend '$backend', expected $BACKEND"
# The kstatus Ready condition is what `kubectl wait` and GitOps tools key on.
"${KUBECTL[@]}" -n "$NS" wait --for=condition=Ready sftdataprep/tiny sftrun/tiny --timeout=30s
log "e2e-kind passed"
