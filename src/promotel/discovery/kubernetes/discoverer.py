"""The discoverer of one ``kubernetes_sd_configs`` entry: reflectors planned, run and turned into groups.

How a watch feeds the polled :class:`promotel.discovery.targets.Discoverer` protocol: the first
``refresh()`` plans the reflectors (:mod:`~promotel.discovery.kubernetes.watch`) the role, namespaces
and ``attach_metadata`` need, makes the API client for the configured access (in-cluster,
``kubeconfig_file`` or ``api_server`` with Prometheus's HTTP client keys) and starts one background
thread per reflector.

Every change of a reflector's store bumps a generation counter and wakes
:meth:`KubernetesDiscoverer.wait` (through the event loop's thread-safe call), which then waits
``debounce`` seconds more so that a burst of events (a rollout) makes one refresh. ``refresh()``
builds the groups from the stores' current contents with
:func:`~promotel.discovery.kubernetes.roles.build_groups` (cached while the generation is
unchanged): a namespace contributes its groups once all its reflectors listed successfully at least
once; problems of reflectors are returned as the ``Refresh``'s problems, so the
:class:`~promotel.discovery.targets.DiscoveryManager` reports them while the last good objects keep
their targets. If no reflector ever listed and one failed, the refresh raises
:class:`promotel.errors.DiscoveryError`; the first refresh waits up to ``sync_timeout`` seconds for
the first lists. ``refresh_interval`` (30 s) is only how long ``wait()`` sleeps when nothing changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from promotel.config.secrets import redact_all
from promotel.discovery.httpconfig import USER_AGENT
from promotel.discovery.kubernetes.config import INSTALL_HINT, SERVICE_ACCOUNT_DIR, KubernetesSDConfig
from promotel.discovery.kubernetes.objects import JSONObject, get_map, get_str, object_key
from promotel.discovery.kubernetes.roles import Stores, build_groups
from promotel.discovery.kubernetes.watch import Reflector, ReflectorKey, kube_module
from promotel.discovery.targets import Refresh, TargetGroup
from promotel.errors import DiscoveryError

__all__ = ["KubernetesDiscoverer"]


@dataclass(slots=True)
class _Unit:
    """The reflectors one namespace's groups are built from: ``main`` is the role's own objects."""

    namespace: str
    main: ReflectorKey
    others: dict[str, ReflectorKey] = field(default_factory=dict)  # "service", "pod", "node", ...


class KubernetesDiscoverer:
    """Lists and watches the objects of one ``kubernetes_sd_configs`` entry; see the module docstring.

    ``service_account_dir`` replaces ``/var/run/secrets/kubernetes.io/serviceaccount`` for in-cluster
    access (token, ``ca.crt``, ``namespace``); ``environ`` replaces ``os.environ`` (for
    ``KUBERNETES_SERVICE_HOST``/``PORT``). ``watch_timeout`` is the lower bound of a watch's
    ``timeoutSeconds`` (it is drawn from ``[watch_timeout, 2*watch_timeout)``), ``request_timeout``
    bounds connecting and each list request, ``backoff``/``max_backoff`` space retries after a failure,
    ``debounce`` is how long ``wait()`` lets a burst of events settle, ``sync_timeout`` how long the
    first refresh waits for the first lists."""

    mechanism = "kubernetes"

    def __init__(self, config: KubernetesSDConfig, name: str = "kubernetes_sd_configs[0]", *,
                 service_account_dir: str = SERVICE_ACCOUNT_DIR, environ: Mapping[str, str] | None = None,
                 refresh_interval: float = 30.0, sync_timeout: float = 20.0, debounce: float = 1.0,
                 watch_timeout: int = 300, request_timeout: float = 30.0, backoff: float = 0.5,
                 max_backoff: float = 30.0, page_size: int = 500) -> None:
        self.name = name
        self.config = config
        self.refresh_interval = refresh_interval
        self.sync_timeout = sync_timeout
        self.debounce = debounce
        self.watch_timeout = watch_timeout
        self.request_timeout = request_timeout
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.page_size = page_size
        self.host = ""
        self.api_client: Any = None
        self.stopping = threading.Event()
        self._service_account_dir = service_account_dir
        self._environ = environ
        self._lock = threading.Lock()
        self._generation = 0
        self._seen_generation = -1
        self._built: Refresh | None = None
        self._reflectors: dict[ReflectorKey, Reflector] = {}
        self._units: list[_Unit] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed: asyncio.Event | None = None
        self._wait_generation = -1

    # -- called from reflector threads --

    def _bump(self) -> None:
        """Under the lock: something changed; wake wait()."""
        self._generation += 1
        loop, changed = self._loop, self._changed
        if loop is not None and changed is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
                loop.call_soon_threadsafe(changed.set)

    def replace(self, reflector: Reflector, objects: dict[str, JSONObject], resource_version: str) -> None:
        with self._lock:
            reflector.objects = objects
            reflector.resource_version = resource_version
            reflector.synced = True
            reflector.problem = None
            self._bump()

    def apply(self, reflector: Reflector, kind: str, obj: object) -> None:
        """One watch event. Every event's object carries the resource version to resume from."""
        if not isinstance(obj, Mapping):
            return
        version = get_str(get_map(obj, "metadata"), "resourceVersion")
        with self._lock:
            if version:
                reflector.resource_version = version
            if kind in ("ADDED", "MODIFIED"):
                reflector.objects[object_key(obj)] = obj
            elif kind == "DELETED":
                reflector.objects.pop(object_key(obj), None)
            else:
                return  # BOOKMARK: only the version moves
            self._bump()

    def set_problem(self, reflector: Reflector, problem: str) -> None:
        with self._lock:
            if reflector.problem != problem:
                reflector.problem = problem
                self._bump()

    # -- setting up --

    def _namespaces(self) -> list[str]:
        names = list(self.config.namespaces.names)
        if self.config.namespaces.own_namespace:
            path = os.path.join(self._service_account_dir, "namespace")
            try:
                with open(path, encoding="utf-8") as fh:
                    own = fh.read()
            except OSError as exc:
                raise DiscoveryError(f"could not determine the pod's namespace from {path}: "
                                     f"{exc.strerror or exc}", kind="config") from exc
            if not own:
                raise DiscoveryError(f"could not read own namespace name ({path} is empty)", kind="config")
            names.append(own)
        if not names:
            return [""]
        return list(dict.fromkeys(names))  # a namespace named twice is watched once

    def _plan(self) -> None:
        cfg, attach = self.config, self.config.attach_metadata
        role = cfg.role

        def key(kind: str, namespace: str, selector_role: str | None = None) -> ReflectorKey:
            label, fld = cfg.selector(selector_role) if selector_role else ("", "")
            return kind, namespace, label, fld

        shared: dict[str, ReflectorKey] = {}
        if attach.node and role in ("pod", "endpoints", "endpointslice"):
            shared["node"] = key("node", "", "node")
        if attach.namespace and role != "node":
            shared["namespace"] = key("namespace", "")
        units: list[_Unit] = []
        if role == "node":
            units.append(_Unit("", key("node", "", "node")))
        else:
            for namespace in self._namespaces():
                unit = _Unit(namespace, key(role, namespace, role), dict(shared))
                if role in ("endpoints", "endpointslice"):
                    unit.others["service"] = key("service", namespace, "service")
                    unit.others["pod"] = key("pod", namespace, "pod")
                if role in ("pod", "endpoints", "endpointslice"):
                    if attach.deployment:
                        unit.others["replicaset"] = key("replicaset", namespace)
                    if attach.job or attach.cronjob:
                        unit.others["job"] = key("job", namespace)
                units.append(unit)
        self._units = units
        for unit in units:
            for reflector_key in (unit.main, *unit.others.values()):
                if reflector_key not in self._reflectors:
                    self._reflectors[reflector_key] = Reflector(self, reflector_key)

    def _make_client(self) -> Any:
        """The API client for the configured access; raises DiscoveryError."""
        try:
            client = kube_module("kubernetes.client")
            kube_config = kube_module("kubernetes.config")
            ConfigException = kube_module("kubernetes.config.config_exception").ConfigException
            InClusterConfigLoader = kube_module("kubernetes.config.incluster_config").InClusterConfigLoader
        except ImportError as exc:
            raise DiscoveryError(INSTALL_HINT, kind="config") from exc
        cfg = self.config
        configuration = client.Configuration()
        try:
            if cfg.kubeconfig_file:
                kube_config.load_kube_config(config_file=cfg.kubeconfig_file, client_configuration=configuration,
                                             persist_config=False)
            elif not cfg.api_server:
                sa = self._service_account_dir
                InClusterConfigLoader(token_filename=os.path.join(sa, "token"),
                                      cert_filename=os.path.join(sa, "ca.crt"),
                                      environ=self._environ if self._environ is not None else os.environ,
                                      ).load_and_set(configuration)
            else:
                self._configure_http_client(configuration)
        except (ConfigException, OSError, ValueError) as exc:
            where = (f"kubeconfig_file {cfg.kubeconfig_file}" if cfg.kubeconfig_file else
                     "api_server" if cfg.api_server else
                     f"in-cluster config (KUBERNETES_SERVICE_HOST/PORT, {self._service_account_dir})")
            raise DiscoveryError(f"cannot set up the Kubernetes client from {where}: {exc}", kind="config") from exc
        configuration.retries = 0  # the reflectors retry, with backoff
        configuration.connection_pool_maxsize = max(4, len(self._reflectors) + 2)  # each watch holds a connection
        self.host = str(configuration.host)
        api_client = client.ApiClient(configuration)
        api_client.user_agent = USER_AGENT
        return api_client

    def _configure_http_client(self, configuration: Any) -> None:
        """api_server with Prometheus's HTTP client keys."""
        cfg = self.config
        host = cfg.api_server if "://" in cfg.api_server else "http://" + cfg.api_server  # as client-go does
        configuration.host = host.rstrip("/")
        tls = cfg.tls_config
        configuration.ssl_ca_cert = tls.ca_file or None
        if tls.ca:
            configuration.ca_cert_data = tls.ca
        configuration.cert_file = tls.cert_file or None
        configuration.key_file = tls.key_file or None
        configuration.verify_ssl = not tls.insecure_skip_verify
        if tls.server_name:
            configuration.tls_server_name = tls.server_name
        if cfg.proxy_url:
            configuration.proxy = cfg.proxy_url
        header = cfg.authorization_header()  # raises OSError for an unreadable credential file
        if header is not None:
            # The client sends api_key["authorization"] as the Authorization header; the hook runs
            # before every request, so credential files are read again each time, as Prometheus does.
            configuration.api_key["authorization"] = header

            def refresh(conf: Any) -> None:
                conf.api_key["authorization"] = cfg.authorization_header()
            configuration.refresh_api_key_hook = refresh

    async def _start(self) -> None:
        """Plan the reflectors, make the client, start the threads. Raises DiscoveryError (nothing
        started; the next refresh tries again: the files may be there by then)."""
        self._reflectors, self._units = {}, []
        self._plan()
        api_client = await asyncio.to_thread(self._make_client)
        if self.stopping.is_set():
            api_client.close()
            raise DiscoveryError("the discoverer is closed", kind="closed")
        self.api_client = api_client
        self._changed = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        for reflector in self._reflectors.values():
            reflector.thread.start()

    # -- the Discoverer protocol --

    def _snapshot(self) -> tuple[int, bool, list[str], list[tuple[_Unit, dict[str, dict[str, JSONObject]]]]]:
        """Under the lock: the generation, whether any reflector ever listed, the current problems, and
        the stores of each unit whose reflectors have all listed."""
        with self._lock:
            problems = [r.problem for r in self._reflectors.values() if r.problem]
            any_synced = any(r.synced for r in self._reflectors.values())
            ready = []
            for unit in self._units:
                keys = {"main": unit.main, **unit.others}
                if all(self._reflectors[k].synced for k in keys.values()):
                    # Copies: the reflectors go on changing their stores in place.
                    ready.append((unit, {name: dict(self._reflectors[k].objects) for name, k in keys.items()}))
            return self._generation, any_synced, problems, ready

    def _pending(self) -> bool:
        with self._lock:
            return any(not r.synced and r.problem is None for r in self._reflectors.values())

    async def refresh(self) -> Refresh:
        if self._loop is None:
            await self._start()
        deadline = time.monotonic() + self.sync_timeout
        while True:
            with self._lock:
                seen = self._generation
            left = deadline - time.monotonic()
            if not self._pending() or left <= 0:
                break
            await self._wait_change(left, seen)
        generation, any_synced, problems, ready = self._snapshot()
        if not any_synced:
            if problems:
                raise DiscoveryError("; ".join(problems), kind="kubernetes")
            raise DiscoveryError(f"no answer to the first list within {self.sync_timeout:g}s from the API server at "
                                 f"{self.host}", kind="timeout")
        if self._built is not None and generation == self._seen_generation:
            return self._built
        role = self.config.role
        groups: list[TargetGroup] = []
        for _unit, stores in ready:
            lookups = Stores(services=stores.get("service", {}), pods=stores.get("pod", {}),
                             nodes=stores.get("node"), namespaces=stores.get("namespace"),
                             replicasets=stores.get("replicaset"), jobs=stores.get("job"),
                             attach_job=self.config.attach_metadata.job,
                             attach_cronjob=self.config.attach_metadata.cronjob)
            main = stores["main"]
            groups += build_groups(role, (main[k] for k in sorted(main)), lookups)
        waiting = [unit.namespace or "all namespaces" for unit in self._units if all(u is not unit for u, _ in ready)]
        if waiting and not problems:
            problems = [f"still waiting for the first list of {', '.join(waiting)}"]
        self._built = Refresh(tuple(groups), tuple(redact_all(p) for p in problems))
        self._seen_generation = generation
        self._wait_generation = generation
        return self._built

    async def _wait_change(self, seconds: float, seen: int) -> None:
        """Until the generation differs from ``seen``, at most ``seconds``. The event is cleared before
        the generation is read: a change after the read sets it again (on this loop, later)."""
        changed = self._changed
        if changed is None:
            await asyncio.sleep(seconds)
            return
        changed.clear()
        with self._lock:
            if self._generation != seen:
                return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await changed.wait()

    async def wait(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        await self._wait_change(seconds, self._wait_generation)  # at once if something changed since refresh()
        left = deadline - time.monotonic()
        if left > 0 and self.debounce > 0:
            await asyncio.sleep(min(self.debounce, left))  # let a burst of events settle

    async def aclose(self) -> None:
        self.stopping.set()
        reflectors = list(self._reflectors.values())
        for reflector in reflectors:
            reflector.stop()

        def join() -> None:
            # A watch can only be cut once its response has begun; one starting right now is stopped
            # by the next round.
            deadline = time.monotonic() + 5.0
            while time.monotonic() < deadline and any(r.thread.is_alive() for r in reflectors):
                for reflector in reflectors:
                    reflector.stop()
                    reflector.thread.join(timeout=0.02)
            if self.api_client is not None:
                with contextlib.suppress(Exception):
                    self.api_client.close()
        await asyncio.to_thread(join)

    # -- for status and tests --

    def reflector_states(self) -> list[tuple[str, bool, str | None, str]]:
        """(what, listed, problem, resource version) for each watched collection."""
        with self._lock:
            return [(r.what, r.synced, r.problem, r.resource_version) for r in self._reflectors.values()]
