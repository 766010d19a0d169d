"""The simulated cluster: the project's Kubernetes mode end to end on one machine, without a cluster.

`SimCluster` (cluster.py) starts the test API server (tests/kubeapi) with the generated CRDs, two
spiderpool-controller replicas and, for each of three nodes, a network namespace with its own macvlan masters
(topology.py), its own filesystem view (node_host.py), its spiderpool-agent and a kubelet stand-in that runs
the CNI chain for the pods bound to it, Multus-style (kubelet.py, multus.py, sandbox.py); a scheduler and
workload controllers (control_plane.py) turn Deployments, StatefulSets and Jobs into pods. Tests drive it with
kubectl and read it through the API (api.py); `python -m tests.simcluster` (`make demo-cluster`) shows it to a
user. The controllers and agents start as the rendered Helm chart says (chart_deployment.py), as its
ServiceAccounts under its RBAC; the stand-ins' command lines live in commands.py.
"""
