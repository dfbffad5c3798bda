"""A local kubelet for tests: it runs the pods of one Node of the real API server as local processes.

kwok's fake nodes run nothing (their pods are "Running" at once), so e2e tests used to start model servers
themselves and only let the operator drive traffic. This kubelet closes that gap: it registers a Node of its own
(one kwok does not manage: hack/kwok/controller.yaml), renews its Lease, and for every pod bound to that node
runs each container's command, args and env (images map to local entry points) as a process, probes it as the
pod says, and writes the pod's real state back (podIP, Ready from the readiness probe, restarts, and at exit
Succeeded/Failed with the exit code and a termination message). Deleting a pod stops its processes.

What a container runtime would isolate is emulated, and only as far as our processes need it:
- network: every pod gets its own address (10.N.x.y, local to the machine by a route on lo; loopback addresses
  would do, but EndpointSlices refuse them) as podIP; the shim (shim/sitecustomize.py,
  imported by every Python process it starts) binds a wildcard listen address to it and resolves Service names
  (`name`, `name.ns`, `name.ns.svc[.cluster.local]`) to a ready endpoint's address and target port, from the
  map this kubelet keeps of Services and EndpointSlices (a kube-proxy without a virtual IP);
- files: emptyDir volumes are directories (configMap, secret and projected ones are written out); env values,
  args and workingDir under a mount path are rewritten to that directory (TMPDIR follows a /tmp mount), so a host
  path under /tmp in a pod's env means the pod's own /tmp, as in a container; the shim maps the container's
  terminationMessagePath to a file of its own, which the kubelet reads when the process ends;
- identity: each pod gets a kubeconfig with a token of its ServiceAccount (TokenRequest), so what it may do
  is what the RBAC the operator wrote grants;
- not emulated: users (runAsUser), read-only root filesystems, resource limits, image pulls.
"""
