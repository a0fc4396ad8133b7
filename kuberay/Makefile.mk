# KubeRay deployment: Kind for dev, Civo (or any cluster) for prod. See kuberay/README.md.
# The root Makefile includes this file (`include kuberay/Makefile.mk`); paths are relative to
# the repository root. Tools: kind, helm, kubectl, docker, openssl; uv for `ray job submit`.

KR_DIR := kuberay
KR_BUILD := build/kuberay
CLUSTER_NAME ?= cryptopred
NAMESPACE ?= cryptopred
ENV ?= dev
IMAGE_TAG ?= 0.1.0
IMAGE_REGISTRY ?=
KR_IMAGE_PREFIX := $(if $(IMAGE_REGISTRY),$(IMAGE_REGISTRY)/,)
RAY_IMAGE := $(KR_IMAGE_PREFIX)cryptopred-ray:$(IMAGE_TAG)
MLFLOW_IMAGE := $(KR_IMAGE_PREFIX)cryptopred-mlflow:$(IMAGE_TAG)
# Chart versions, pinned (KubeRay 1.7 matches the CRDs the tests validate against).
KUBERAY_VERSION ?= 1.7.0
STRIMZI_VERSION ?= 0.48.0
RISINGWAVE_CHART_VERSION ?= 0.2.11
KUBERAY_NAMESPACE ?= kuberay-system
STRIMZI_NAMESPACE ?= strimzi
# Local ports of `make port-forward` and `make ray-dashboard`: the cluster's port + 20000, clear
# of the embedded stack's (`cryptopred up`: 5000, 5433, 6379, 8000, 8265, 9092) and of Kind's
# host ports (kind-config.yaml: 1xxxx), so all three can run at once.
PF_GRAFANA_PORT ?= 23000
PF_MLFLOW_PORT ?= 25000
PF_KAFKA_UI_PORT ?= 28080
PF_SERVE_PORT ?= 28000
PF_RAY_PORT ?= 28265
PF_RISINGWAVE_PORT ?= 24566
# The RayCluster's job API: Kind's host port 18265 in dev, the forwarded port otherwise.
KIND_RAY_PORT := 18265
RAY_JOB_ADDRESS ?= http://127.0.0.1:$(if $(filter dev,$(ENV)),$(KIND_RAY_PORT),$(PF_RAY_PORT))
# Ray Train workers of `make submit-train`; empty: CRYPTOPRED_TRAIN_WORKERS of the cluster's env.
TRAIN_WORKERS ?=
TRAIN_PAIRS ?= BTC/USD ETH/USD
# Ray Tune trials per training run (1: no search)
TRAIN_TRIALS ?= 1
DASHBOARDS_DIR ?= dashboards
# The RisingWave schema script that `make kuberay-init-sql` renders (cryptopred_core.db.risingwave_init)
RW_INIT_SQL ?= $(KR_DIR)/base/risingwave/init.sql
DASHBOARD_FILES = $(sort $(wildcard $(DASHBOARDS_DIR)/*.json $(DASHBOARDS_DIR)/*/*.json))
RUN ?= uv run --frozen
KUBECTL ?= kubectl
HELM ?= helm
KIND ?= kind
DOCKER ?= docker
KR_RANDOM ?= openssl rand -hex 24
# Prints the digest of the image put in for {image}; or
# docker buildx imagetools inspect {image} --format {{.Manifest.Digest}}
DIGEST_RESOLVER ?= crane digest {image}
# The manifests name the local images cryptopred-ray:0.1.0 and cryptopred-mlflow:0.1.0; deploy
# rewrites them to $(IMAGE_REGISTRY)/...:$(IMAGE_TAG) when those are set.
KR_IMAGE_REWRITE = sed -E 's\#image: cryptopred-(ray|mlflow):[A-Za-z0-9._-]+\#image: $(KR_IMAGE_PREFIX)cryptopred-\1:$(IMAGE_TAG)\#'

.PHONY: cluster-up kind-create cluster-down undeploy operators secrets deploy port-forward ray-dashboard \
	submit-stream submit-train build-image kind-load push-image serve-config kuberay-init-sql \
	dashboards-configmap kuberay-dashboards-yaml kuberay-render pin-images cluster-rehearsal

cluster-up: kind-create operators ## Kind cluster (kuberay/kind-config.yaml), KubeRay and Strimzi operators

kind-create: ## Create the Kind cluster unless it exists
	@$(KIND) get clusters 2>/dev/null | grep -qx '$(CLUSTER_NAME)' \
		|| $(KIND) create cluster --name $(CLUSTER_NAME) --config $(KR_DIR)/kind-config.yaml

# Teardown on the current context, the inverse of `deploy`: the RisingWave release, then the
# overlay's objects with the namespace (its Secrets, ConfigMaps and volumes go with it) while the
# operators still run to finalize the Ray and Kafka objects.
define KR_UNDEPLOY
	$(if $(filter dev prod,$(ENV)),,$(error ENV must be dev or prod, got '$(ENV)'))
	$(HELM) uninstall risingwave --namespace $(NAMESPACE) --ignore-not-found --wait
	$(KUBECTL) delete -k $(KR_DIR)/overlays/$(ENV) --ignore-not-found --wait --timeout=15m
endef
# The inverse of `operators` (their CRDs stay: helm never deletes them).
define KR_OPERATORS_DOWN
	$(HELM) uninstall strimzi-cluster-operator --namespace $(STRIMZI_NAMESPACE) --ignore-not-found --wait
	$(HELM) uninstall kuberay-operator --namespace $(KUBERAY_NAMESPACE) --ignore-not-found --wait
	$(KUBECTL) delete namespace $(STRIMZI_NAMESPACE) $(KUBERAY_NAMESPACE) --ignore-not-found
endef

cluster-down: ## ENV=dev: delete the Kind cluster; ENV=prod: undeploy, then uninstall the operators
ifeq ($(ENV),dev)
	$(KIND) delete cluster --name $(CLUSTER_NAME)
else
	$(KR_UNDEPLOY)
	$(KR_OPERATORS_DOWN)
endif

undeploy: ## Delete what `deploy ENV=...` made from the current context; the operators stay
	$(KR_UNDEPLOY)

operators: ## helm: KubeRay operator (RayCronJob feature gate on) and Strimzi, on the current context
	$(HELM) repo add kuberay https://ray-project.github.io/kuberay-helm/ --force-update
	$(HELM) upgrade --install kuberay-operator kuberay/kuberay-operator --version $(KUBERAY_VERSION) \
		--namespace $(KUBERAY_NAMESPACE) --create-namespace \
		-f $(KR_DIR)/helm/kuberay-operator-values.yaml --wait
	$(KUBECTL) apply -f $(KR_DIR)/base/namespace.yaml
	$(HELM) upgrade --install strimzi-cluster-operator oci://quay.io/strimzi-helm/strimzi-kafka-operator \
		--version $(STRIMZI_VERSION) --namespace $(STRIMZI_NAMESPACE) --create-namespace \
		-f $(KR_DIR)/helm/strimzi-values.yaml --wait

# Create one Secret unless it exists (existing passwords are kept: the databases hold them).
define kr_secret
	@if $(KUBECTL) -n $(NAMESPACE) get secret $(1) >/dev/null 2>&1; then echo "secret $(1): kept"; \
	else $(KUBECTL) -n $(NAMESPACE) create secret generic $(1) $(2) >/dev/null && echo "secret $(1): created"; fi
endef

secrets: ## Random credentials as Secrets in the cluster (never in the repo); existing ones kept
	@$(KUBECTL) get namespace $(NAMESPACE) >/dev/null 2>&1 || $(KUBECTL) apply -f $(KR_DIR)/base/namespace.yaml
	$(call kr_secret,mlflow-postgres,--from-literal=username=mlflow --from-literal=password=$$($(KR_RANDOM)))
	$(call kr_secret,minio,--from-literal=root-user=cryptopred --from-literal=root-password=$$($(KR_RANDOM)))
	$(call kr_secret,mlflow-auth,--from-literal=username=admin --from-literal=password=$$($(KR_RANDOM)))
	$(call kr_secret,grafana-admin,--from-literal=admin-user=admin --from-literal=admin-password=$$($(KR_RANDOM)))
	$(call kr_secret,grafana-db,--from-literal=password=$$($(KR_RANDOM)))
	$(call kr_secret,redis,--from-literal=password=$$($(KR_RANDOM)))
	$(call kr_secret,risingwave-minio,--from-literal=MINIO_USERNAME=$$($(KUBECTL) -n $(NAMESPACE) get secret minio -o jsonpath='{.data.root-user}' | base64 -d) --from-literal=MINIO_PASSWORD=$$($(KUBECTL) -n $(NAMESPACE) get secret minio -o jsonpath='{.data.root-password}' | base64 -d))

# The ConfigMap grafana-dashboards, built from every JSON file of dashboards/ (and one level
# below); Grafana mounts it optionally, so an empty folder is fine.
KR_DASHBOARDS_YAML = $(KUBECTL) create configmap grafana-dashboards --namespace $(NAMESPACE) \
	$(foreach f,$(DASHBOARD_FILES),--from-file=$(f)) --dry-run=client -o yaml

kuberay-dashboards-yaml: ## Print the ConfigMap grafana-dashboards built from dashboards/**.json
	@$(KR_DASHBOARDS_YAML)

dashboards-configmap: ## Apply the ConfigMap grafana-dashboards (every JSON file of dashboards/)
	$(KR_DASHBOARDS_YAML) | $(KUBECTL) apply -f -

kuberay-render: ## Render the overlay ENV=dev|prod to build/kuberay/ENV.yaml (images rewritten)
	$(if $(filter dev prod,$(ENV)),,$(error ENV must be dev or prod, got '$(ENV)'))
	@mkdir -p $(KR_BUILD)
	$(KUBECTL) kustomize $(KR_DIR)/overlays/$(ENV) | $(KR_IMAGE_REWRITE) > $(KR_BUILD)/$(ENV).yaml
	@echo "rendered $(KR_BUILD)/$(ENV).yaml"

deploy: kuberay-render secrets dashboards-configmap ## Deploy the stack: ENV=dev (Kind) or ENV=prod (Civo)
	$(HELM) repo add risingwavelabs https://risingwavelabs.github.io/helm-charts/ --force-update
	$(HELM) upgrade --install risingwave risingwavelabs/risingwave --version $(RISINGWAVE_CHART_VERSION) \
		--namespace $(NAMESPACE) -f $(KR_DIR)/base/risingwave/values.yaml \
		$(if $(filter prod,$(ENV)),-f $(KR_DIR)/overlays/prod/risingwave-values.yaml)
	@echo "applying the stack; the Ray jobs follow once Kafka and the RayCluster are up"
	$(KUBECTL) apply -f $(KR_BUILD)/$(ENV).yaml -l 'cryptopred.io/stage!=jobs'
	$(KUBECTL) -n $(NAMESPACE) wait kafka/cryptopred --for=condition=Ready --timeout=15m
	$(KUBECTL) -n $(NAMESPACE) wait raycluster/cryptopred --for=jsonpath='{.status.state}'=ready --timeout=15m
	$(KUBECTL) apply -f $(KR_BUILD)/$(ENV).yaml -l 'cryptopred.io/stage=jobs'
	$(KUBECTL) -n $(NAMESPACE) get rayclusters,rayjobs,raycronjobs,rayservices

port-forward: ## Forward Grafana :23000, MLflow :25000, Kafka UI :28080, Serve :28000, Ray :28265, RisingWave :24566
	@echo "forwarding; Ctrl-C stops"
	@trap 'kill $$(jobs -p) 2>/dev/null' INT TERM EXIT; \
	$(KUBECTL) -n $(NAMESPACE) port-forward svc/grafana $(PF_GRAFANA_PORT):3000 & \
	$(KUBECTL) -n $(NAMESPACE) port-forward svc/mlflow $(PF_MLFLOW_PORT):5000 & \
	$(KUBECTL) -n $(NAMESPACE) port-forward svc/kafka-ui $(PF_KAFKA_UI_PORT):8080 & \
	$(KUBECTL) -n $(NAMESPACE) port-forward svc/cryptopred-serve-serve-svc $(PF_SERVE_PORT):8000 & \
	$(KUBECTL) -n $(NAMESPACE) port-forward svc/cryptopred-head-svc $(PF_RAY_PORT):8265 & \
	$(KUBECTL) -n $(NAMESPACE) port-forward svc/risingwave $(PF_RISINGWAVE_PORT):4566 & \
	wait

ray-dashboard: ## Forward the RayCluster's dashboard (and job API) to http://127.0.0.1:28265
	$(KUBECTL) -n $(NAMESPACE) port-forward svc/cryptopred-head-svc $(PF_RAY_PORT):8265

submit-stream: ## ray job submit the streaming pipeline and the live Kraken source to the RayCluster (RAY_JOB_ADDRESS)
	$(RUN) ray job submit --address $(RAY_JOB_ADDRESS) --no-wait -- python -m cryptopred_ingest.stream.job --live-source

# One `cryptopred train` per pair of TRAIN_PAIRS, one after the other, in one RayJob.
TRAIN_ENTRYPOINT = $(foreach pair,$(TRAIN_PAIRS),cryptopred train --pair $(pair) --candle-seconds 60 $(if $(TRAIN_WORKERS),--workers $(TRAIN_WORKERS) )--trials $(TRAIN_TRIALS) &&) true

submit-train: ## Train each pair of TRAIN_PAIRS now: a RayJob on a cluster of its own (the RayCronJob retrain's), never on the pipeline's
	$(KUBECTL) -n $(NAMESPACE) get raycronjob retrain -o json \
		| $(RUN) python $(KR_DIR)/oneoff_job.py -- '$(TRAIN_ENTRYPOINT)' \
		| $(KUBECTL) -n $(NAMESPACE) create -f -

build-image: ## docker build the Ray image and the MLflow image (kuberay/Dockerfile)
	$(DOCKER) build -f $(KR_DIR)/Dockerfile --target ray -t $(RAY_IMAGE) .
	$(DOCKER) build -f $(KR_DIR)/Dockerfile --target mlflow -t $(MLFLOW_IMAGE) .

kind-load: ## Load both images into the Kind cluster's node
	$(KIND) load docker-image $(RAY_IMAGE) $(MLFLOW_IMAGE) --name $(CLUSTER_NAME)

push-image: ## Push both images to IMAGE_REGISTRY (for Civo)
	$(if $(IMAGE_REGISTRY),,$(error set IMAGE_REGISTRY, e.g. ghcr.io/<you>))
	$(DOCKER) push $(RAY_IMAGE)
	$(DOCKER) push $(MLFLOW_IMAGE)

pin-images: ## Pin the prod overlay's images by digest (DIGEST_RESOLVER; IMAGE_REGISTRY for ours)
	$(RUN) python $(KR_DIR)/pin_images.py --registry '$(IMAGE_REGISTRY)' --tag '$(IMAGE_TAG)' \
		--resolver '$(DIGEST_RESOLVER)'

serve-config: ## Regenerate the RayService's serveConfigV2 from serving/serve_config.yaml
	$(RUN) python $(KR_DIR)/render_serve_config.py

kuberay-init-sql: ## Regenerate kuberay/base/risingwave/init.sql from the table contract (cryptopred_core.db)
	$(RUN) python -m cryptopred_core.db.risingwave_init --write $(RW_INIT_SQL)

# Extra flags of `make cluster-rehearsal`, e.g. --set CRYPTOPRED_TRAIN_WORKERS=1 --keep
REHEARSAL_ARGS ?=
cluster-rehearsal: ## Run the rendered overlay ENV=dev|prod on this machine without Kubernetes, checked
	$(RUN) cryptopred cluster-rehearsal --env $(ENV) $(REHEARSAL_ARGS)
