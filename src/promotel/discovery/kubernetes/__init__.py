"""``kubernetes_sd_configs``: targets from the Kubernetes API, kept current by list and watch.

Prometheus's Kubernetes SD (``discovery/kubernetes``), through the official ``kubernetes`` Python
client, which is an optional extra: ``pip install 'promotel[kubernetes]'``. The public names are
gathered in :mod:`promotel.discovery.kubernetes_sd` (the path configs and callers import); this
package re-exports nothing. Its modules, each importing only those above it:

* :mod:`~promotel.discovery.kubernetes.selectors` — the label and field selector syntax, checked as
  apimachinery checks it.
* :mod:`~promotel.discovery.kubernetes.config` — ``KubernetesSDConfig`` and its parts: the keys,
  Prometheus's checks and messages, whether the client is installed.
* :mod:`~promotel.discovery.kubernetes.objects` — reading the API's JSON objects leniently, and the
  store key of an object.
* :mod:`~promotel.discovery.kubernetes.roles` — target groups and ``__meta_kubernetes_*`` labels,
  role by role (pure functions of the objects).
* :mod:`~promotel.discovery.kubernetes.watch` — reflectors: list, watch from the resourceVersion, 410
  re-list, backoff, each in a thread.
* :mod:`~promotel.discovery.kubernetes.discoverer` — ``KubernetesDiscoverer``: plans the reflectors,
  makes the API client, wakes ``wait()`` on changes and builds the groups at ``refresh()``.
"""
