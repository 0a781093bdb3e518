"""
Rollout collection steps/s: local backend (1, 2 envs) vs Ray backend (1, 2 workers).

Usage: .venv/bin/python bench/rollout_scaling.py [--env trpo_ros/KukaReach-v0]
       [--n-steps 1024] [--rounds 5] [--ray-temp-dir DIR]

All four collectors are built first (actor startup and env construction are not timed), each
gets one untimed warm-up collect, then `rounds` rounds time one `collect(n_steps)` of every
backend in turn (interleaved, so drift on a shared machine hits all alike); the median round
is reported, with the CPU seconds (user + system, from /proc) of the processes each backend
uses: wall time on a machine shared with other jobs says as much about them as about the
backend; CPU time is what the backend itself costs. Ray runs as a local instance on 127.0.0.1.
Also printed: the bytes the learner sends per iteration (one payload for all workers) and
receives (one batch per worker), the fixed cost of one Ray round trip (collect of 1 step),
and the learner's own time per sample (GAE + TRPO step + critic fit), the serial part that
bounds scaling over machines.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import pickle
import platform
import statistics
import tempfile
import time

from trpo_ros.core.ray_rollout import LOCAL_RAY_ENV

for _key, _value in LOCAL_RAY_ENV.items():  # before the first `import ray`: stay on 127.0.0.1
    os.environ.setdefault(_key, _value)

import ray  # noqa: E402, I100
import torch  # noqa: E402
from trpo_ros.core.backends import make_collector  # noqa: E402
from trpo_ros.core.config import TRPOConfig  # noqa: E402
from trpo_ros.core.policy import PolicyModel  # noqa: E402
from trpo_ros.core.ray_rollout import make_payload  # noqa: E402
from trpo_ros.core.rollout import make_env  # noqa: E402
from trpo_ros.core.trainer import Trainer  # noqa: E402

TICKS = os.sysconf('SC_CLK_TCK')


def process_table() -> dict[int, tuple[int, float]]:
    """Pid -> (parent pid, CPU seconds user+system) of every process we can read."""
    table = {}
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open(f'/proc/{entry}/stat') as f:
                fields = f.read().rsplit(')', 1)[1].split()
        except OSError:
            continue
        table[int(entry)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / TICKS)
    return table


def descendants(table: dict[int, tuple[int, float]], root: int) -> set[int]:
    found, frontier = set(), {root}
    while frontier:
        frontier = {pid for pid, (ppid, _) in table.items() if ppid in frontier} - found
        found |= frontier
    return found


def own_pids(collector: object) -> set[int]:
    """Return the processes stepping this collector's envs (env subprocesses or Ray actors)."""
    if hasattr(collector, 'hosts'):
        return {pid for _, pid in collector.hosts}
    return {p.pid for p in getattr(collector.envs, 'processes', [])}


def batch_bytes(batch: object) -> int:
    """Array bytes of a Batch: per-step arrays plus the observation moments (per batch)."""
    mean, var, _ = batch.obs_moments
    return mean.nbytes + var.nbytes + 8 + sum(
        getattr(batch, name).nbytes
        for name in ('obs', 'actions', 'rewards', 'terminated', 'truncated', 'next_obs'))


def learner_seconds_per_sample(env_id: str, n_steps: int) -> float:
    """Trainer iteration time minus collection time, per sample (local, 2 envs)."""
    with tempfile.TemporaryDirectory() as run_dir:
        config = TRPOConfig(env_id=env_id, n_envs=2, n_steps=n_steps, total_steps=10 ** 9,
                            eval_every=0, checkpoint_every=10 ** 6)
        trainer = Trainer(config, run_dir, tensorboard=False)
        collect, spent = trainer.collector.collect, []

        def timed_collect(*args: object, **kwargs: object) -> object:
            start = time.perf_counter()
            batch = collect(*args, **kwargs)
            spent.append(time.perf_counter() - start)
            return batch

        trainer.collector.collect = timed_collect
        learner = []
        for _ in range(3):
            start = time.perf_counter()
            trainer.train_iteration()
            learner.append(time.perf_counter() - start - spent[-1])
        trainer.close()
    return statistics.median(learner[1:]) / config.batch_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--env', default='trpo_ros/KukaReach-v0')
    parser.add_argument('--n-steps', type=int, default=1024)
    parser.add_argument('--rounds', type=int, default=5)
    parser.add_argument('--ray-temp-dir', default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cpus = os.cpu_count() or 2
    # Logical CPUs for Ray: 3 so that the 1-worker and the 2-worker collectors can both hold
    # their actors at once (idle actors use no CPU); no timed collect steps more than 2 envs.
    ray.init(num_cpus=max(cpus, 3), include_dashboard=False, logging_level=logging.WARNING,
             _temp_dir=args.ray_temp_dir)

    base = TRPOConfig(env_id=args.env, n_steps=args.n_steps, seed=0)
    env = make_env(args.env)
    space = env.action_space
    policy = PolicyModel.build(base, env.observation_space.shape[0], space.low, space.high)
    env.close()
    setups = {'local, 1 env': base.replace(n_envs=1),
              'local, 2 envs': base.replace(n_envs=2),
              'ray, 1 worker': base.replace(rollout_backend='ray', num_workers=1),
              'ray, 2 workers': base.replace(rollout_backend='ray', num_workers=2)}
    load_before = f'{os.getloadavg()[0]:.2f}'
    started = time.perf_counter()
    collectors = {name: make_collector(cfg, seed=0) for name, cfg in setups.items()}
    startup = time.perf_counter() - started
    generator = torch.Generator().manual_seed(0)
    sizes = {}
    for name, collector in collectors.items():  # warm-up, untimed
        sizes[name] = batch_bytes(collector.collect(args.n_steps, policy, generator))
    # CPU seconds of the processes each backend uses: this process, its env processes or
    # worker actors and, for Ray, Ray's own processes (raylet, GCS, agents, idle workers).
    # CPU time is what the backends cost; wall time also depends on other load on the machine.
    everyone = descendants(process_table(), os.getpid())
    workers = {name: own_pids(c) for name, c in collectors.items()}
    ray_system = everyone - set().union(*workers.values())
    counted = {name: {os.getpid()} | workers[name] | (ray_system if name.startswith('ray')
                                                      else set())
               for name in collectors}
    times: dict[str, list[float]] = {name: [] for name in collectors}
    cpu = dict.fromkeys(collectors, 0.0)
    for _ in range(args.rounds):
        for name, collector in collectors.items():
            before = process_table()
            start = time.perf_counter()
            collector.collect(args.n_steps, policy, generator)
            times[name].append(time.perf_counter() - start)
            after = process_table()
            cpu[name] += sum(after[pid][1] - before[pid][1] for pid in counted[name]
                             if pid in before and pid in after)
    round_trip = []
    for _ in range(20):
        start = time.perf_counter()
        collectors['ray, 2 workers'].collect(1, policy, generator)
        round_trip.append(time.perf_counter() - start)
    for collector in collectors.values():
        collector.close()
    ray.shutdown()
    learner_per_sample = learner_seconds_per_sample(args.env, args.n_steps)

    payload = make_payload(policy, generator)
    payload_bytes = len(pickle.dumps(payload, protocol=5))
    print(f'# trpo_ros rollout scaling, {datetime.datetime.now().isoformat(timespec="seconds")}')
    print(f'# machine: {platform.platform()}, {platform.processor() or platform.machine()}, '
          f'cpu_count={cpus}, python {platform.python_version()}, ray {ray.__version__}, '
          f'torch {torch.__version__}')
    print(f'# env {args.env}, n_steps={args.n_steps} per env, median of {args.rounds} rounds; '
          f'collector startup (all four, untimed below) {startup:.1f} s')
    print(f'# load average before/after: {load_before} / {os.getloadavg()[0]:.2f} '
          f'on {cpus} CPUs')
    print(f'{"backend":<16} {"envs":>4} {"s/collect":>9} {"steps/s":>9} {"wall vs local":>13} '
          f'{"CPU us/step":>11} {"CPU vs local":>12}')
    sps, cpu_per_step = {}, {}
    for name, cfg in setups.items():
        seconds = statistics.median(times[name])
        sps[name] = cfg.total_envs * args.n_steps / seconds
        cpu_per_step[name] = cpu[name] / (cfg.total_envs * args.n_steps * args.rounds)
        local = 'local, 1 env' if cfg.total_envs == 1 else 'local, 2 envs'
        wall = cpu_ratio = ''
        if name.startswith('ray'):
            wall = f'{100 * (sps[local] / sps[name] - 1):+.1f} %'
            cpu_ratio = f'{100 * (cpu_per_step[name] / cpu_per_step[local] - 1):+.1f} %'
        print(f'{name:<16} {cfg.total_envs:>4} {seconds:>9.3f} {sps[name]:>9.0f} {wall:>13} '
              f'{1e6 * cpu_per_step[name]:>11.0f} {cpu_ratio:>12}')
    per_worker = sizes['ray, 1 worker']
    print(f'# Ray overhead at 2 workers vs local 2 envs (target <= +15 %, negative = Ray '
          f'cheaper): wall time '
          f'{100 * (sps["local, 2 envs"] / sps["ray, 2 workers"] - 1):+.1f} %, CPU time '
          f'{100 * (cpu_per_step["ray, 2 workers"] / cpu_per_step["local, 2 envs"] - 1):+.1f} %')
    print(f'# per iteration: learner -> object store: 1 payload of {payload_bytes} B '
          f'(actor {sum(v.nbytes for v in payload["actor"].values())} B, normalizer+scaler '
          f'{sum(v.nbytes for k in ("normalizer", "scaler") for v in payload[k].values())} B, '
          f'generator state {payload["generator"].nbytes} B); '
          f'each worker -> learner: {per_worker} B '
          f'({per_worker / args.n_steps:.0f} B per env step)')
    print(f'# fixed cost of one Ray iteration (2 workers, collect of 1 step): '
          f'median {1e3 * statistics.median(round_trip):.1f} ms')
    print(f'# learner (GAE + TRPO step + critic fit), local: {1e6 * learner_per_sample:.1f} us '
          'per sample')
    env_rate = sps['ray, 1 worker']
    print('# prediction, N machines x 1 worker, n_steps fixed (batch grows with N): '
          'iteration = collect(n_steps) + learner(N * n_steps) + transfer')
    for n in (1, 2, 4, 8, 16):
        collect_s = args.n_steps / env_rate + statistics.median(round_trip)
        transfer_s = n * per_worker / 125e6  # into the learner over 1 Gbit/s
        learn_s = n * args.n_steps * learner_per_sample
        total = collect_s + learn_s + transfer_s
        print(f'#   N={n:>2}: {n * args.n_steps / total:>8.0f} steps/s overall '
              f'(collect {collect_s:.2f} s, learner {learn_s:.2f} s, transfer '
              f'{1e3 * transfer_s:.1f} ms)')


if __name__ == '__main__':
    main()
