"""
Rollouts on Ray actors: the same `collect`/`close` as `RolloutCollector`, across machines.

Each worker is a Ray actor that owns `envs_per_worker` environments and a `RolloutCollector`
over them (the local collector is the one way to collect; this module only ships it the
policy and gathers what it returns). Per iteration:

1. the learner puts ONE payload in the object store (`ray.put`): actor weights, normalizer and
   action-scaler buffers, and the learner's torch generator state — a few tens of KB;
2. every worker gets one remote call, `collect(payload_ref, n_steps)`, and steps its envs
   `n_steps` times with no further traffic;
3. the learner gathers the batches (`ray.wait`) and concatenates them along the env axis, so
   the Batch has `num_workers * envs_per_worker` columns, worker k's envs in columns
   k*m .. k*m+m-1 — the layout of a local collector with that many envs. Each worker
   normalizes observations with the learner's statistics plus its own observations so far;
   the joined `obs_moments` (all workers' raw observations) go back into the learner's
   normalizer.

Seeding (so that one worker reproduces the local backend exactly): worker k resets its envs
with `seed + k * envs_per_worker` (env j of the whole batch gets `seed + j`, as in a local
vector env). Worker 0 draws its sampling noise from the learner's generator (its state travels
in the payload and the advanced state comes back), so with one worker the Ray and local
backends give identical batches and leave the learner's generator in the same state. Workers
k >= 1 own a generator seeded from (seed, k, restart generation).

Faults: a worker whose actor dies mid-iteration (`RayActorError`) is replaced by a new actor
with fresh, differently seeded envs, and its share is collected again, so every iteration
returns the full batch. Everything the dead worker had collected in that iteration is
discarded; the learner cannot know how far it got (one call per iteration, no progress
reports), so its whole share (`n_steps * envs_per_worker`) is counted in `Batch.lost_steps`
(an upper bound of the steps it had actually stepped). Episodes in progress on the dead
worker are lost, never counted; episodes spanning iterations on live workers are counted once.
"""

from __future__ import annotations

from collections.abc import Callable
import os
import socket
import sys
import time
from typing import Any

import numpy as np
import torch
from trpo_ros.core.config import ConfigError, from_dict, TRPOConfig
from trpo_ros.core.networks import merge_moments
from trpo_ros.core.policy import PolicyModel
from trpo_ros.core.rollout import Batch, make_vector_env, RolloutCollector

CONNECT_TIMEOUT_S = 3.0
"""How long to try a HOST:PORT cluster address before giving up with a ConfigError."""
READY_TIMEOUT_S = 300.0
"""How long to wait for the worker actors to be placed and to build their envs."""
FREE_CPU_WAIT_S = 10.0
"""How long to wait for CPUs held by actors that are being released (e.g. a closed collector)."""
MAX_RESTARTS_PER_ITERATION = 3
"""Restarts of one worker slot within one iteration before the iteration fails."""


LOCAL_RAY_ENV = {'RAY_USAGE_STATS_ENABLED': '0', 'RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER': '0',
                 'RAY_worker_niceness': '0'}
"""Environment for a single-machine Ray (set with `setdefault`: the user's values win):
no usage reports; node IP detection that returns the loopback address (Ray 2.x turns
`_node_ip_address='127.0.0.1'` into the host's primary IP otherwise, and its servers then
listen on every interface; read when `ray` is first imported); workers at nice 0 like the
local backend's env processes (Ray's default, nice 15, makes rollouts lose the CPU to any
other process on the machine)."""


def _import_ray(local: bool = False) -> Any:
    """
    Import ray, or raise a ConfigError that says how to get it.

    With `local` (no cluster address) and Ray not yet imported, the local instance is set up
    by `LOCAL_RAY_ENV`.
    """
    os.environ.setdefault('RAY_USAGE_STATS_ENABLED', '0')  # no usage reports leave the machine
    if local and 'ray' not in sys.modules:
        for key, value in LOCAL_RAY_ENV.items():
            os.environ.setdefault(key, value)
    try:
        import ray
    except ImportError:
        raise ConfigError("rollout_backend 'ray' needs Ray: pip install 'trpo_ros[ray]' "
                          "(or 'ray>=2.9,<3')") from None
    return ray


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """
    Raise ConfigError when nothing listens where `ray.init(address)` would connect.

    That is checked for the address as given and as Ray rewrites it ('auto' read from this
    machine's latest `ray start`; a loopback host replaced by this machine's IP), so a wrong
    address fails in seconds instead of Ray's minutes of retries. '' and 'ray://' client
    addresses are left to `ray.init`.
    """
    if not address or '://' in address:
        return
    if address != 'auto':
        host, sep, port = address.rpartition(':')
        if not sep or not port.isdigit():
            raise ConfigError(f"ray_address must be 'auto' or HOST:PORT, got {address!r}")
    try:
        from ray._private.services import canonicalize_bootstrap_address

        target = canonicalize_bootstrap_address(address)
    except ImportError:  # private Ray API moved: check the address as given
        target = None if address == 'auto' else address
    except (ValueError, ConnectionError) as exc:
        raise ConfigError(f'bad ray_address {address!r}: {exc}') from None
    if target is None:
        if address == 'auto':
            raise ConfigError("ray_address 'auto': no running Ray cluster found on this "
                              "machine (start one with 'ray start --head')")
        return
    for where in dict.fromkeys([address, target]):
        if where == 'auto':
            continue
        host, _, port = where.rpartition(':')
        try:
            with socket.create_connection((host.strip('[]') or '127.0.0.1', int(port)),
                                          timeout=timeout):
                pass
        except OSError as exc:
            via = '' if where == address else f' (Ray connects to {where} for it)'
            raise ConfigError(f'cannot reach the Ray cluster at {address}{via}: '
                              f'{exc.strerror or exc.__class__.__name__}; start it with '
                              "'ray start --head' or fix --ray-address") from None


def connect(address: str) -> bool:
    """
    Join the cluster at `address` or, when empty, start a local Ray on 127.0.0.1.

    Returns True when this call started Ray (the caller shuts it down).
    An already initialized Ray in this process is used as it is.
    """
    ray = _import_ray(local=not address)
    check_reachable(address)  # needs `ray` imported (for Ray's address rewriting)
    if ray.is_initialized():
        return False
    try:
        if address:
            ray.init(address=address)
        else:
            ray.init(include_dashboard=False, _node_ip_address='127.0.0.1')
    except (ConnectionError, RuntimeError, ValueError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
        hint = (' (with token authentication on the cluster, set RAY_AUTH_MODE=token and its '
                'token here)') if address else ''
        raise ConfigError(f'cannot connect to the Ray cluster at {address or "local"}: '
                          f'{first_line}{hint}') from None
    return True


def generator_seed(seed: int, worker: int, generation: int) -> int:
    """Seed of worker `worker`'s own torch generator (workers >= 1), per restart generation."""
    state = np.random.SeedSequence([seed, worker, generation]).generate_state(1, np.uint64)
    return int(state[0])


class RolloutWorker:
    """The body of one Ray rollout actor: a local `RolloutCollector` over its own envs."""

    def __init__(self, config: dict[str, Any], reset_seed: int, seed: int) -> None:
        """Build the envs (`config['n_envs']` of them) and the acting modules."""
        cfg = from_dict(config)
        torch.set_num_threads(cfg.torch_threads)
        envs = make_vector_env(cfg)
        self.collector = RolloutCollector(envs, reset_seed)
        obs_dim = envs.single_observation_space.shape[0]
        space = envs.single_action_space
        self.policy = PolicyModel.build(cfg, obs_dim, space.low, space.high)
        self.generator = torch.Generator().manual_seed(seed)

    def ready(self) -> tuple[str, int]:
        """(hostname, pid): answers once the envs are built."""
        return socket.gethostname(), os.getpid()

    def collect(self, payload: dict[str, Any], n_steps: int,
                use_learner_generator: bool) -> tuple[Batch, torch.Tensor | None]:
        """
        Load the payload's policy and collect `n_steps` per env.

        With `use_learner_generator` the noise comes from the learner's generator state (in the
        payload) and its advanced state is returned; otherwise from this worker's own.
        """
        self.policy.load_payload(payload['policy'])
        generator = self.generator
        if use_learner_generator:
            generator = torch.Generator()
            generator.set_state(torch.tensor(payload['generator']))
        batch = self.collector.collect(n_steps, self.policy, generator)
        return batch, generator.get_state() if use_learner_generator else None

    def close(self) -> None:
        """Close the envs."""
        self.collector.close()


def make_payload(policy: PolicyModel, generator: torch.Generator) -> dict[str, Any]:
    """
    Hold what the learner sends each iteration: the policy and the generator state.

    These are numpy arrays: Ray ships them without pickling their data.
    """
    return {'policy': policy.payload(), 'generator': generator.get_state().numpy()}


def concatenate(batches: list[Batch], lost_steps: int = 0) -> Batch:
    """Join worker batches along the env axis (episode statistics in worker order)."""
    def cat(name: str) -> np.ndarray:
        return np.concatenate([getattr(b, name) for b in batches], axis=1)

    moments = batches[0].obs_moments
    for b in batches[1:]:
        moments = merge_moments(*moments, *b.obs_moments)
    joined = Batch(cat('obs'), cat('actions'), cat('rewards'), cat('terminated'),
                   cat('truncated'), cat('next_obs'), moments, lost_steps=lost_steps)
    for b in batches:
        joined.episode_returns.extend(b.episode_returns)
        joined.episode_lengths.extend(b.episode_lengths)
        joined.episode_successes.extend(b.episode_successes)
    return joined


class RayCollector:
    """
    Rollout backend on `config.num_workers` Ray actors.

    Each actor has `config.envs_per_worker` envs; `collect` returns one Batch with
    `config.total_envs` env columns.
    """

    def __init__(self, config: TRPOConfig, seed: int) -> None:
        """Connect (or start Ray), check the cluster has the CPUs, start the workers."""
        self.ray = _import_ray(local=not config.ray_address)
        self.config = config
        self.seed = seed
        self.m = config.envs_per_worker
        self._owns_ray = connect(config.ray_address)
        self._closed = False
        try:
            self._check_cpus(config.num_workers * self.m)
            self._worker_config = config.replace(n_envs=self.m, rollout_backend='local',
                                                 ray_address='').to_dict()
            self._actor_class = self.ray.remote(num_cpus=self.m, max_restarts=0)(RolloutWorker)
            self.generations = [0] * config.num_workers
            self.workers = [self._start(k) for k in range(config.num_workers)]
            try:
                self.hosts = self.ray.get([w.ready.remote() for w in self.workers],
                                          timeout=READY_TIMEOUT_S)
            except self.ray.exceptions.GetTimeoutError:
                raise RuntimeError(f'Ray rollout workers not ready after {READY_TIMEOUT_S:g} s '
                                   '(CPUs taken by other jobs, or envs slow to build)') from None
        except BaseException:
            self.close()
            raise

    def _check_cpus(self, need: int) -> None:
        """Raise ConfigError unless `need` CPUs are free (waits for actors being released)."""
        deadline = time.monotonic() + FREE_CPU_WAIT_S
        while True:
            total = self.ray.cluster_resources().get('CPU', 0)
            free = self.ray.available_resources().get('CPU', 0)
            if need <= free:
                return
            if need > total or time.monotonic() > deadline:
                raise ConfigError(f'Ray cluster at {self.config.ray_address or "local"} has '
                                  f'{total:g} CPUs ({free:g} free); num_workers * '
                                  f'envs_per_worker = {need} needs {need} (one per env)')
            time.sleep(0.2)

    def _start(self, k: int) -> Any:
        generation = self.generations[k]
        reset_seed = self.seed + k * self.m + self.config.total_envs * generation
        return self._actor_class.remote(self._worker_config, reset_seed,
                                        generator_seed(self.seed, k, generation))

    def _restart(self, k: int) -> None:
        try:
            self.ray.kill(self.workers[k])
        except Exception:  # noqa: BLE001 - it is already dead or unreachable
            pass
        self.generations[k] += 1
        self.workers[k] = self._start(k)

    def collect(self, n_steps: int, policy: PolicyModel, generator: torch.Generator,
                cancel: Callable[[], bool] | None = None) -> Batch:
        """
        Run `n_steps` steps in every env of every worker (one remote call per worker).

        `cancel` is accepted for interface parity; the learner only waits (GIL released).
        """
        ray = self.ray
        payload = ray.put(make_payload(policy, generator))
        pending = {self.workers[k].collect.remote(payload, n_steps, k == 0): k
                   for k in range(len(self.workers))}
        results: list[Batch | None] = [None] * len(self.workers)
        restarts = [0] * len(self.workers)
        lost_steps = 0
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            k = pending.pop(done[0])
            try:
                batch, generator_state = ray.get(done[0])
            except ray.exceptions.RayActorError as exc:
                restarts[k] += 1
                if restarts[k] > MAX_RESTARTS_PER_ITERATION:
                    raise RuntimeError(f'rollout worker {k} died {restarts[k]} times in one '
                                       f'iteration; last error: {exc}') from None
                lost_steps += n_steps * self.m
                self._restart(k)
                pending[self.workers[k].collect.remote(payload, n_steps, k == 0)] = k
                continue
            if generator_state is not None:
                generator.set_state(generator_state)
            results[k] = batch
        return concatenate(results, lost_steps)

    def close(self) -> None:
        """Close the workers' envs, end the actors, and shut Ray down if this started it."""
        if self._closed:
            return
        self._closed = True
        workers = getattr(self, 'workers', [])
        if workers:
            try:
                self.ray.get([w.close.remote() for w in workers], timeout=10)
            except Exception:  # noqa: BLE001 - a dead worker has nothing left to close
                pass
            for w in workers:
                try:
                    self.ray.kill(w)
                except Exception:  # noqa: BLE001
                    pass
        if self._owns_ray:
            self.ray.shutdown()
