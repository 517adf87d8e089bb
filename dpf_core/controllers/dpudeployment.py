"""DPUDeployment: one object that owns the DPUSets, DPUServices, DPUServiceInterfaces and the DPUServiceChain of
a deployment, with REAL versions (docs/dpudeployment.md).

One pass (DPF's dpudeployment controller; the summary is written on every pass):
1. deleting -> delete chains, interfaces and services (requeue 10 s until gone), then the DPUSets (10 s), unmark
   the dependencies, drop the finalizer; else add the finalizer (return);
2. dependencies (same namespace): BFB, DPUFlavor, and per service key a DPUServiceTemplate and a
   DPUServiceConfiguration whose `deploymentServiceName` is the key; each gets the finalizer
   `dpu.nvidia.com/dpudeployment` and the label `dpu.nvidia.com/consumed-by-dpudeployment-name`; ones no longer
   used are unmarked. Missing -> `PrerequisitesReady` False Pending;
3. resource fitting: flavor (dpuResources - systemReservedResources) must cover the sum of the templates'
   resourceRequirements (skipped without dpuResources); else `ResourceFittingReady` False Failure;
4. versions: each service's version is a content hash of its template spec + configuration spec, the chain's
   a hash of `serviceChains`; they replace DPF's `placeholder-for-version` everywhere DPF writes it;
5. children (controller ownerReference, label owned-by `<ns>_<name>`): DPUServiceInterface per configuration
   interface, DPUService `<dep>-<svc>`, DPUServiceChain `<dep>`, DPUSets `<dep>-<nameSuffix>` (RollingUpdate,
   node labels = owned-by + each DPU-bound service's version + the chain version); extras deleted;
6. `*Ready` from the children's `Ready`; `DPUSetsReady` is forced True, as in DPF.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from fractions import Fraction
from typing import Any

from dpf_core.api.conditions import (
    REASON_AWAITING_DELETION,
    REASON_FAILURE,
    REASON_PENDING,
    REASON_SUCCESS,
    list_names,
    set_condition,
)
from dpf_core.api.meta import KubeObject
from dpf_core.api.provisioning import BFB, DPUFlavor, DPUSet
from dpf_core.api.quantity import format_quantity, parse_quantity
from dpf_core.api.svc import (
    ANNOTATION_DPUSERVICE_VERSION,
    ANNOTATION_DPUSERVICECHAIN_VERSION,
    CONDITION_DPUSERVICE_CHAINS_READY,
    CONDITION_DPUSERVICE_CHAINS_RECONCILED,
    CONDITION_DPUSERVICE_INTERFACES_READY,
    CONDITION_DPUSERVICE_INTERFACES_RECONCILED,
    CONDITION_DPUSERVICES_READY,
    CONDITION_DPUSERVICES_RECONCILED,
    CONDITION_DPUSETS_READY,
    CONDITION_DPUSETS_RECONCILED,
    CONDITION_PREREQS_READY,
    CONDITION_READY,
    CONDITION_RESOURCE_FITTING_READY,
    FINALIZER_DPUDEPLOYMENT,
    LABEL_DEPENDENT_DPUDEPLOYMENT_NAME,
    LABEL_DPF_SERVICE_ID,
    LABEL_DPUSERVICECHAIN_VERSION,
    LABEL_PARENT_DPUDEPLOYMENT_NAME,
    LABEL_SERVICE_INTERFACE_INTERFACE_NAME,
    DPUDeployment,
    DPUService,
    DPUServiceChain,
    DPUServiceConfiguration,
    DPUServiceInterface,
    DPUServiceTemplate,
    dpuservice_version_label_key,
)
from dpf_core.errors import NotFound
from dpf_core.runtime import DONE, Context, Controller, Request, Result, Watch, from_object, owner

from .mirror import ListerCell, ListerController, apply, is_ready
from .reconcile_base import FinalizerReconciler, phase
from .svc_common import content_hash, deep_merge

NAME = "dpudeployment"
DELETION_REQUEUE = 10.0
# Our extension: dependencies are watched, but a template created under another name is only found by a poll.
PREREQUISITES_POLL = 30.0
VERSION_PREFIX = "v-"

CONDITIONS = (
    CONDITION_READY,
    CONDITION_PREREQS_READY,
    CONDITION_RESOURCE_FITTING_READY,
    CONDITION_DPUSETS_RECONCILED,
    CONDITION_DPUSETS_READY,
    CONDITION_DPUSERVICES_RECONCILED,
    CONDITION_DPUSERVICES_READY,
    CONDITION_DPUSERVICE_CHAINS_RECONCILED,
    CONDITION_DPUSERVICE_CHAINS_READY,
    CONDITION_DPUSERVICE_INTERFACES_RECONCILED,
    CONDITION_DPUSERVICE_INTERFACES_READY,
)

CHILD_KINDS: tuple[type[KubeObject], ...] = (DPUServiceChain, DPUServiceInterface, DPUService, DPUSet)


class PrerequisitesPending(Exception):
    pass


class ResourcesDoNotFit(Exception):
    pass


def owned_by_value(dep: DPUDeployment) -> str:
    return f"{dep.namespace}_{dep.name}"


def service_id(dep: DPUDeployment, svc: str) -> str:
    return f"dpudeployment_{dep.name}_{svc}"


def interface_name(dep: DPUDeployment, svc: str, ifname: str) -> str:
    return f"{dep.name}-{svc}-{ifname.replace('_', '-')}"


def service_version(template: DPUServiceTemplate, config: DPUServiceConfiguration) -> str:
    """What a service runs: its template and its configuration. Any change to either is a new version."""
    return VERSION_PREFIX + content_hash(template.spec.wire(), config.spec.wire())


def chain_version(dep: DPUDeployment) -> str:
    return VERSION_PREFIX + content_hash([s.wire() for s in dep.spec.service_chains])


class Dependencies:
    __slots__ = ("bfb", "configs", "flavor", "templates")

    def __init__(self, bfb: BFB, flavor: DPUFlavor, templates: dict[str, DPUServiceTemplate],
                 configs: dict[str, DPUServiceConfiguration]) -> None:
        self.bfb = bfb
        self.flavor = flavor
        self.templates = templates
        self.configs = configs

    def objects(self) -> list[KubeObject]:
        return [self.bfb, self.flavor, *self.templates.values(), *self.configs.values()]


def _sum_resources(lists: Iterable[dict[str, Any]]) -> dict[str, Fraction]:
    total: dict[str, Fraction] = {}
    for rl in lists:
        for name, q in rl.items():
            total[name] = total.get(name, Fraction(0)) + parse_quantity(q)
    return total


def fitting_problems(flavor: DPUFlavor, templates: Iterable[DPUServiceTemplate]) -> list[str]:
    """What the services need beyond what the flavor leaves for them, as DPF's GetAllocatableResources lists it
    (`<resource>: <missing quantity>`); empty = they fit. DPF lists them in Go map order; sorted here."""
    spec = flavor.spec
    if spec.dpu_resources is None:
        return []
    free = _sum_resources([spec.dpu_resources])
    for name, q in _sum_resources([spec.system_reserved_resources or {}]).items():
        free[name] = free.get(name, Fraction(0)) - q
    need = _sum_resources(t.spec.resource_requirements for t in templates)
    out: list[str] = []
    for name in sorted(need):
        missing = need[name] - free.get(name, Fraction(0))
        if missing > 0:
            out.append(f"{name}: {format_quantity(missing)}")
    return out


def fitting_message(problems: list[str]) -> str:
    """DPF's ResourceFittingReady message: the wrapped error, `%v` of the []string (two spaces are DPF's)."""
    return ("Error occurred: there are not enough resources for DPUServices to fit in this DPUDeployment:  "
            f"Additional resources needed: [{' '.join(problems)}]")


class DPUDeploymentReconciler(FinalizerReconciler[DPUDeployment]):
    KIND = DPUDeployment
    CONDITIONS = CONDITIONS
    FINALIZER = FINALIZER_DPUDEPLOYMENT

    # --- dependencies -----------------------------------------------------------------------------------
    def _dependencies(self, ctx: Context, dep: DPUDeployment) -> Dependencies:
        ns = dep.namespace
        missing: list[str] = []
        bfb = ctx.client.try_get(BFB, dep.spec.dpus.bfb, ns)
        if bfb is None:
            missing.append(f"BFB {ns}/{dep.spec.dpus.bfb}")
        flavor = ctx.client.try_get(DPUFlavor, dep.spec.dpus.flavor, ns)
        if flavor is None:
            missing.append(f"DPUFlavor {ns}/{dep.spec.dpus.flavor}")
        templates: dict[str, DPUServiceTemplate] = {}
        configs: dict[str, DPUServiceConfiguration] = {}
        for key, ref in sorted(dep.spec.services.items()):
            t = ctx.client.try_get(DPUServiceTemplate, ref.service_template, ns)
            if t is None:
                missing.append(f"DPUServiceTemplate {ns}/{ref.service_template}")
            elif t.spec.deployment_service_name != key:
                missing.append(f"DPUServiceTemplate {ns}/{ref.service_template} (deploymentServiceName "
                               f"{t.spec.deployment_service_name!r} != {key!r})")
            else:
                templates[key] = t
            c = ctx.client.try_get(DPUServiceConfiguration, ref.service_configuration, ns)
            if c is None:
                missing.append(f"DPUServiceConfiguration {ns}/{ref.service_configuration}")
            elif c.spec.deployment_service_name != key:
                missing.append(f"DPUServiceConfiguration {ns}/{ref.service_configuration} (deploymentServiceName "
                               f"{c.spec.deployment_service_name!r} != {key!r})")
            else:
                configs[key] = c
        if missing or bfb is None or flavor is None:
            raise PrerequisitesPending("missing or mismatched dependencies: " + ", ".join(missing))
        return Dependencies(bfb, flavor, templates, configs)

    def _mark_dependencies(self, ctx: Context, dep: DPUDeployment, deps: list[KubeObject]) -> None:
        used = {(type(o), o.name) for o in deps}
        for o in deps:
            if (o.metadata.labels.get(LABEL_DEPENDENT_DPUDEPLOYMENT_NAME) == dep.name
                    and FINALIZER_DPUDEPLOYMENT in o.metadata.finalizers):
                continue
            marked = o.deepcopy()
            marked.metadata.labels[LABEL_DEPENDENT_DPUDEPLOYMENT_NAME] = dep.name
            if FINALIZER_DPUDEPLOYMENT not in marked.metadata.finalizers:
                marked.metadata.finalizers.append(FINALIZER_DPUDEPLOYMENT)
            ctx.client.update(marked)
        self._unmark(ctx, dep, keep=used)

    def _unmark(self, ctx: Context, dep: DPUDeployment, keep: set[tuple[type[KubeObject], str]]) -> None:
        for cls in (BFB, DPUFlavor, DPUServiceTemplate, DPUServiceConfiguration):
            for o in ctx.client.list(cls, dep.namespace, label_selector={LABEL_DEPENDENT_DPUDEPLOYMENT_NAME: dep.name}):
                if (cls, o.name) in keep:
                    continue
                freed = o.deepcopy()
                freed.metadata.labels.pop(LABEL_DEPENDENT_DPUDEPLOYMENT_NAME, None)
                freed.metadata.finalizers = [f for f in freed.metadata.finalizers if f != FINALIZER_DPUDEPLOYMENT]
                with contextlib.suppress(NotFound):
                    ctx.client.update(freed)

    # --- the flow ---------------------------------------------------------------------------------------
    def reconcile_normal(self, ctx: Context, new: DPUDeployment, now: str) -> Result:
        conds = new.status.conditions
        try:
            deps = self._dependencies(ctx, new)
        except PrerequisitesPending as e:
            set_condition(conds, CONDITION_PREREQS_READY, "False", REASON_PENDING, str(e), now)
            return Result(requeue_after=PREREQUISITES_POLL)
        self._mark_dependencies(ctx, new, deps.objects())
        set_condition(conds, CONDITION_PREREQS_READY, "True", REASON_SUCCESS, "", now)

        problems = fitting_problems(deps.flavor, deps.templates.values())
        if problems:
            set_condition(conds, CONDITION_RESOURCE_FITTING_READY, "False", REASON_FAILURE, fitting_message(problems), now)
            return DONE
        set_condition(conds, CONDITION_RESOURCE_FITTING_READY, "True", REASON_SUCCESS, "", now)

        versions = {k: service_version(deps.templates[k], deps.configs[k]) for k in deps.templates}
        chain_v = chain_version(new)
        steps: list[tuple[str, Callable[[], None]]] = [
            (CONDITION_DPUSERVICE_INTERFACES_RECONCILED, lambda: self._interfaces(ctx, new, deps, versions)),
            (CONDITION_DPUSERVICES_RECONCILED, lambda: self._services(ctx, new, deps, versions)),
            (CONDITION_DPUSERVICE_CHAINS_RECONCILED, lambda: self._chain(ctx, new, chain_v)),
            (CONDITION_DPUSETS_RECONCILED, lambda: self._dpusets(ctx, new, deps, versions, chain_v)),
        ]
        # Ours, not DPF's (it stops at the first failing kind): one kind's error does not hold back the others'
        # updates; the first error is the one retried.
        first_error: Exception | None = None
        for cond, step in steps:
            try:
                with phase(conds, cond, now):
                    step()
            except Exception as e:
                first_error = first_error or e
        if first_error is not None:
            raise first_error
        return DONE

    def _child_meta(self, dep: DPUDeployment, name: str, labels: dict[str, str] | None = None,
                    annotations: dict[str, str] | None = None) -> dict[str, Any]:
        return {
            "name": name,
            "namespace": dep.namespace,
            "labels": {**(labels or {}), LABEL_PARENT_DPUDEPLOYMENT_NAME: owned_by_value(dep)},
            "annotations": annotations or {},
            "ownerReferences": [dep.controller_ref().model_dump(by_alias=True, exclude_none=True)],
        }

    def _owned(self, ctx: Context, cls: type[KubeObject], dep: DPUDeployment) -> list[KubeObject]:
        return list(ctx.client.list(cls, dep.namespace, label_selector={LABEL_PARENT_DPUDEPLOYMENT_NAME: owned_by_value(dep)}))

    def _prune(self, ctx: Context, cls: type[KubeObject], dep: DPUDeployment, keep: set[str]) -> None:
        for o in self._owned(ctx, cls, dep):
            if o.name not in keep and o.metadata.deletion_timestamp is None:
                with contextlib.suppress(NotFound):
                    ctx.client.delete(cls, o.name, o.namespace)

    def _version_selector(self, dep: DPUDeployment, key: str, version: str) -> list[dict[str, Any]]:
        return [
            {"key": key, "operator": "In", "values": [version]},
            {"key": LABEL_PARENT_DPUDEPLOYMENT_NAME, "operator": "In", "values": [owned_by_value(dep)]},
        ]

    def _interfaces(self, ctx: Context, dep: DPUDeployment, deps: Dependencies, versions: dict[str, str]) -> None:
        keep: set[str] = set()
        for svc, config in sorted(deps.configs.items()):
            for iface in config.spec.interfaces or []:
                name = interface_name(dep, svc, iface.name)
                keep.add(name)
                selector = self._version_selector(dep, dpuservice_version_label_key(svc), versions[svc])
                apply(ctx.client, DPUServiceInterface.new(name, dep.namespace, metadata=self._child_meta(dep, name), spec={
                    "template": {"spec": {
                        "nodeSelector": {"matchExpressions": selector},
                        "template": {
                            "metadata": {"labels": {LABEL_DPF_SERVICE_ID: service_id(dep, svc),
                                                    LABEL_SERVICE_INTERFACE_INTERFACE_NAME: iface.name}},
                            "spec": {"interfaceType": "service", "service": {
                                "serviceID": service_id(dep, svc), "network": iface.network,
                                "interfaceName": iface.name}},
                        },
                    }},
                }))
        self._prune(ctx, DPUServiceInterface, dep, keep)

    def _services(self, ctx: Context, dep: DPUDeployment, deps: Dependencies, versions: dict[str, str]) -> None:
        keep: set[str] = set()
        for svc in sorted(deps.templates):
            template, config = deps.templates[svc], deps.configs[svc]
            sc = config.spec.service_configuration
            name = f"{dep.name}-{svc}"
            keep.add(name)
            chart = template.spec.helm_chart.wire()
            config_values = (sc.helm_chart.values if sc and sc.helm_chart else None) or {}
            values = deep_merge(template.spec.helm_chart.values or {}, config_values)
            if values:
                chart["values"] = values
            sds: dict[str, Any] = {}
            if sc is not None and sc.service_daemon_set is not None:
                sds = sc.service_daemon_set.wire()
            in_cluster = bool(sc and sc.should_deploy_in_cluster())
            if not in_cluster:
                sds["nodeSelector"] = {"nodeSelectorTerms": [{"matchExpressions": self._version_selector(
                    dep, dpuservice_version_label_key(svc), versions[svc])}]}
            spec: dict[str, Any] = {"helmChart": chart, "serviceID": service_id(dep, svc)}
            if sds:
                spec["serviceDaemonSet"] = sds
            if sc is not None and sc.deploy_in_cluster is not None:
                spec["deployInCluster"] = sc.deploy_in_cluster
            if config.spec.interfaces:
                spec["interfaces"] = [interface_name(dep, svc, i.name) for i in config.spec.interfaces]
            meta = self._child_meta(dep, name, annotations={ANNOTATION_DPUSERVICE_VERSION: versions[svc]})
            apply(ctx.client, DPUService.new(name, dep.namespace, metadata=meta, spec=spec))
        self._prune(ctx, DPUService, dep, keep)

    def _chain(self, ctx: Context, dep: DPUDeployment, version: str) -> None:
        switches: list[dict[str, Any]] = []
        for sw in dep.spec.service_chains:
            ports: list[dict[str, Any]] = []
            for port in sw.ports:
                if port.service is not None:
                    ifc: dict[str, Any] = {"matchLabels": {LABEL_DPF_SERVICE_ID: service_id(dep, port.service.name),
                                                           LABEL_SERVICE_INTERFACE_INTERFACE_NAME: port.service.interface}}
                    if port.service.ipam is not None:
                        ifc["ipam"] = port.service.ipam.wire()
                    ports.append({"serviceInterface": ifc})
                elif port.service_interface is not None:
                    ports.append({"serviceInterface": port.service_interface.wire()})
            switches.append({"ports": ports})
        name = dep.name
        meta = self._child_meta(dep, name, annotations={ANNOTATION_DPUSERVICECHAIN_VERSION: version})
        apply(ctx.client, DPUServiceChain.new(name, dep.namespace, metadata=meta, spec={"template": {"spec": {
            "nodeSelector": {"matchExpressions": self._version_selector(dep, LABEL_DPUSERVICECHAIN_VERSION, version)},
            "template": {"spec": {"switches": switches}},
        }}}))
        self._prune(ctx, DPUServiceChain, dep, {name})

    def _dpusets(self, ctx: Context, dep: DPUDeployment, deps: Dependencies, versions: dict[str, str],
                 chain_v: str) -> None:
        node_labels = {LABEL_PARENT_DPUDEPLOYMENT_NAME: owned_by_value(dep), LABEL_DPUSERVICECHAIN_VERSION: chain_v}
        for svc, version in versions.items():
            sc = deps.configs[svc].spec.service_configuration
            if sc is None or not sc.should_deploy_in_cluster():
                node_labels[dpuservice_version_label_key(svc)] = version
        keep: set[str] = set()
        for ds in dep.spec.dpus.dpu_sets or []:
            name = f"{dep.name}-{ds.name_suffix}"
            keep.add(name)
            spec: dict[str, Any] = {
                "strategy": {"type": "RollingUpdate"},
                "dpuTemplate": {"annotations": dict(ds.dpu_annotations), "spec": {
                    "bfb": {"name": dep.spec.dpus.bfb}, "dpuFlavor": dep.spec.dpus.flavor,
                    "cluster": {"nodeLabels": node_labels}}},
            }
            if ds.node_selector is not None:
                spec["nodeSelector"] = ds.node_selector.wire()
            if ds.dpu_selector:
                spec["dpuSelector"] = dict(ds.dpu_selector)
            desired = DPUSet.new(name, dep.namespace, metadata=self._child_meta(dep, name), spec=spec)
            existing = ctx.client.try_get(DPUSet, name, dep.namespace)
            if existing is None:
                ctx.client.create(desired)
                continue
            # Patched, never recreated: the template's nodeEffect and anything a user set elsewhere survive.
            updated = existing.deepcopy()
            updated.metadata.labels = {**existing.metadata.labels, **desired.metadata.labels}
            updated.metadata.owner_references = desired.metadata.owner_references
            updated.spec.strategy = desired.spec.strategy
            updated.spec.node_selector = desired.spec.node_selector
            updated.spec.dpu_selector = desired.spec.dpu_selector
            updated.spec.dpu_template.annotations = desired.spec.dpu_template.annotations
            t = updated.spec.dpu_template.spec
            t.bfb = desired.spec.dpu_template.spec.bfb
            t.dpu_flavor = desired.spec.dpu_template.spec.dpu_flavor
            t.cluster = desired.spec.dpu_template.spec.cluster
            if updated.wire() != existing.wire():
                ctx.client.update(updated)
        self._prune(ctx, DPUSet, dep, keep)

    # --- readiness --------------------------------------------------------------------------------------
    def _expected(self, ctx: Context, dep: DPUDeployment) -> dict[type[KubeObject], set[str]]:
        """The children this deployment should have (an absent one is not ready, not ignored)."""
        interfaces: set[str] = set()
        for svc, ref in dep.spec.services.items():
            config = ctx.client.try_get(DPUServiceConfiguration, ref.service_configuration, dep.namespace)
            for iface in (config.spec.interfaces or []) if config is not None else []:
                interfaces.add(interface_name(dep, svc, iface.name))
        return {
            DPUService: {f"{dep.name}-{svc}" for svc in dep.spec.services},
            DPUServiceChain: {dep.name},
            DPUServiceInterface: interfaces,
        }

    def summarize(self, ctx: Context, obj: DPUDeployment, new: DPUDeployment, now: str) -> Exception | None:
        conds = new.status.conditions
        expected = self._expected(ctx, new)
        for cond, cls in ((CONDITION_DPUSERVICES_READY, DPUService),
                          (CONDITION_DPUSERVICE_CHAINS_READY, DPUServiceChain),
                          (CONDITION_DPUSERVICE_INTERFACES_READY, DPUServiceInterface)):
            children = {c.name: c for c in self._owned(ctx, cls, new)}
            unready = [f"{new.namespace}/{name}" + ("" if name in children else " (missing)")
                       for name in sorted(expected[cls] | set(children))
                       if name not in children or not is_ready(
                           children[name].status.conditions,  # type: ignore[attr-defined]
                           children[name].metadata.generation)]
            if unready:
                set_condition(conds, cond, "False", REASON_PENDING, "Objects not ready: " + list_names(unready, ", "), now)
            else:
                set_condition(conds, cond, "True", REASON_SUCCESS, "", now)
        set_condition(conds, CONDITION_DPUSETS_READY, "True", REASON_SUCCESS, "", now)
        return None

    # --- deletion ---------------------------------------------------------------------------------------
    def reconcile_delete(self, ctx: Context, new: DPUDeployment, now: str) -> Result:
        conds = new.status.conditions
        remaining = 0
        for cls in (DPUServiceChain, DPUServiceInterface, DPUService):
            for o in self._owned(ctx, cls, new):
                remaining += 1
                if o.metadata.deletion_timestamp is None:
                    with contextlib.suppress(NotFound):
                        ctx.client.delete(cls, o.name, o.namespace)
        if remaining:
            set_condition(conds, CONDITION_DPUSERVICES_RECONCILED, "False", REASON_AWAITING_DELETION,
                          f"{remaining} DPUServices, DPUServiceChains and DPUServiceInterfaces still exist", now)
            return Result(requeue_after=DELETION_REQUEUE)
        sets = self._owned(ctx, DPUSet, new)
        if sets:
            for o in sets:
                if o.metadata.deletion_timestamp is None:
                    with contextlib.suppress(NotFound):
                        ctx.client.delete(DPUSet, o.name, o.namespace)
            set_condition(conds, CONDITION_DPUSETS_RECONCILED, "False", REASON_AWAITING_DELETION,
                          f"{len(sets)} DPUSets still exist", now)
            return Result(requeue_after=DELETION_REQUEUE)
        self._unmark(ctx, new, keep=set())
        new.metadata.finalizers = [f for f in new.metadata.finalizers if f != FINALIZER_DPUDEPLOYMENT]
        return DONE


def controller() -> Controller:
    cell = ListerCell()

    def same_namespace(obj: KubeObject) -> list[Request]:
        if cell.lister is None:
            return []
        return sorted(Request.of(d) for d in cell.lister(DPUDeployment) if d.namespace == obj.namespace)

    watches = [Watch(cls, owner(DPUDeployment)) for cls in CHILD_KINDS]
    watches += [Watch(cls, from_object(same_namespace)) for cls in (BFB, DPUFlavor, DPUServiceTemplate, DPUServiceConfiguration)]
    return ListerController(NAME, DPUDeploymentReconciler(), DPUDeployment, watches, cell=cell)
