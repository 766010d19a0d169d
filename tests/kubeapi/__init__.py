"""kubeapi: the project's in-memory Kubernetes API server for tests, benchmarks and the cluster demo.

No kube-apiserver can be installed on these machines, so this is the one sanctioned fake. It is faithful where
the project's code or a user's client depends on it, and that is proven with real clients (kubectl 1.37, the
official `kubernetes` client, kubernetes-asyncio, Helm 4 through helm-python-sdk) in this package's tests. The
requirements were measured against real clients (kubectl, Helm, the Python clients).

Use it in-process (`KubeApiServer` with `await start()/stop()`, or `ServerThread` for synchronous code) or as
a command (`python -m tests.kubeapi`). Modules, each owning one thing:

    kinds       served resources: the builtin table (one line per kind) and CRD-backed types
    store       objects, the global resourceVersion counter, bounded watch history, watchers
    rest        REST verb semantics (CAS, generation, status subresource, finalizers, GC, dryRun, ...)
    crds        CRD defaults, checks, status conditions and served types
    schema      structural schema pruning, defaulting and validation of custom resources
    apply       server-side apply merge and minimal managedFields
    patch       merge patch, JSON patch, strategic merge patch
    selectors   label and field selectors
    discovery   aggregated and legacy discovery
    openapi     /openapi/v3 and the /openapi/v2 protobuf stub
    tables      server-side tables (printer columns, builtin columns, ages)
    admission   calls to mutating and validating admission webhooks
    rbac        bearer-token authentication and RBAC authorization
    protobuf    decoding of Kubernetes protobuf request bodies (Secret, ConfigMap, Namespace)
    faults      injected latency/faults and the request counter
    admin       the /_kubeapi admin endpoint and its client (faults from another process)
    workloads   fake "finished" status for Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs
    multus      the NetworkAttachmentDefinition CRD installed at start
    certs       a throwaway CA, the server certificate, webhook certificates
    kubeconfig  kubeconfig and in-cluster files
    server      HTTP routing, negotiation, watch streams, wiring; ServerThread
    errors      Status bodies

KNOWN GAPS versus a real API server (tests must not rely on these):
- Server-side apply: field ownership is minimal (see apply.py): no conflicts between managers (never 409 on
  apply, `force` ignored), no client-side-apply migration, managedFields entries are approximations.
- Builtin kinds have no schemas: unknown fields and types of builtin objects are not checked (fieldValidation
  applies to custom resources only); builtin defaulting is limited to a few fields (Secret stringData/type,
  pod and namespace phases). Names are validated (RFC 1123 subdomain/label), labels and annotations are not.
- CRDs: `x-kubernetes-validations` (CEL) is not evaluated; no conversion webhooks (conversion None only); no
  name-conflict detection between CRDs; `int32`/`int64` formats are not range-checked; defaults apply on write
  only (not when reading objects written before a schema change).
- Lists: `continue` tokens page over the current state (not a consistent snapshot at the first page's RV);
  `resourceVersionMatch=Exact` and list-by-RV are served from the current state.
- Watch: bookmarks are sent every `bookmark_interval` seconds; no watch cache semantics beyond the bounded
  history.
- Pods: no kubelet. Deleting a pod removes it at once (no graceful termination); no controllers create pods;
  the workload status is faked (workloads.py). No scheduler, no service IP allocation, no endpoints
  controller.
- Admission: matchConditions (CEL), reinvocationPolicy and ValidatingAdmissionPolicy are not implemented;
  garbage-collector deletions skip admission.
- RBAC: aggregated ClusterRoles are not aggregated; no impersonation; no client certificates (tokens only).
- Protobuf: request bodies of Secret, ConfigMap, Namespace and SelfSubjectAccessReview only (others get
  415); responses are always JSON.
- Strategic merge patch: merge keys for the common list fields only (patch.py); other lists are replaced.
- No subresources besides `status` (no scale, log, exec, eviction, binding); no aggregated API servers.
"""

from .admin import AdminClient
from .faults import Faults, Rule
from .rbac import User
from .server import KubeApiServer, ServerConfig, ServerThread

__all__ = ["AdminClient", "Faults", "KubeApiServer", "Rule", "ServerConfig", "ServerThread", "User"]
