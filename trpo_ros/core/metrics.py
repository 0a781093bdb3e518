"""Run-directory logging: metrics.csv, TensorBoard events, the learning-curve PNG."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from trpo_ros.core.checkpoint import atomic_write_bytes

# Every metric a training iteration logs, in CSV column order, with its meaning (README table).
METRICS: dict[str, str] = {
    'iteration': 'TRPO iterations completed',
    'env_steps': 'environment steps collected so far (all envs)',
    'rollout/ep_return_mean': 'mean return of episodes that ended in this batch',
    'rollout/ep_len_mean': 'mean length of those episodes',
    'rollout/success_rate': 'share of those episodes that ended in success (reach envs)',
    'rollout/lost_steps': 'steps lost with a failed rollout worker and collected again',
    'train/kl': 'measured mean KL(pi_old || pi_new) of the accepted step (0 if rejected)',
    'train/delta': 'trust-region radius the step was bounded by',
    'train/delta_next': 'radius for the next step after adaptation',
    'train/surrogate_gain': 'measured surrogate improvement L(new) - L(old)',
    'train/expected_gain': 'linear prediction g . dtheta of that improvement',
    'train/improvement_ratio': 'surrogate_gain / expected_gain',
    'train/line_search_steps': 'candidate steps evaluated (1 = full step accepted)',
    'train/step_accepted': '1 if the line search accepted a step, 0 if the policy was kept',
    'train/kl_next_batch': "KL(previous policy || policy) on this batch's states",
    'train/rolled_back': '1 if the regression guard restored the previous policy',
    'train/entropy': 'mean entropy of the Gaussian policy (normalized action units)',
    'train/value_loss': 'critic mean squared error (last epoch)',
    'train/explained_variance': 'explained variance of the critic on the batch returns',
    'eval/return_mean': 'deterministic evaluation return (only on evaluation iterations)',
    'eval/success_rate': 'deterministic evaluation success rate (reach envs)',
    'time/steps_per_second': 'environment steps per second of the whole iteration',
    'time/elapsed': 'seconds since the run started (this process)',
}
TIMING = ('time/steps_per_second', 'time/elapsed')


class MetricsLog:
    """Appends one row per iteration to metrics.csv and TensorBoard."""

    def __init__(self, run_dir: Path, tensorboard: bool = True) -> None:
        self.csv_path = run_dir / 'metrics.csv'
        self.rows: list[dict[str, float]] = read_metrics(self.csv_path)
        self._tensorboard_dir = run_dir / 'tensorboard' if tensorboard else None
        self._writer = None

    def truncate(self, iteration: int) -> None:
        """Forget rows after `iteration` (a resumed run continues from its checkpoint)."""
        self.rows = [row for row in self.rows if row['iteration'] <= iteration]
        self._write_csv()

    def append(self, row: dict[str, float]) -> None:
        """Record one iteration."""
        self.rows.append({key: float(row.get(key, math.nan)) for key in METRICS})
        self._write_csv()
        if self._tensorboard_dir is not None:
            if self._writer is None:
                from torch.utils.tensorboard import SummaryWriter

                self._writer = SummaryWriter(str(self._tensorboard_dir))
            step = int(row['env_steps'])
            for key, value in row.items():
                if key not in ('iteration', 'env_steps') and math.isfinite(value):
                    self._writer.add_scalar(key, value, step)
            self._writer.flush()

    def _write_csv(self) -> None:
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=list(METRICS))
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_bytes(self.csv_path, text.getvalue().encode())

    def close(self) -> None:
        """Flush and close TensorBoard."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def read_metrics(path: Path) -> list[dict[str, float]]:
    """Rows of a metrics.csv as floats (empty if the file does not exist)."""
    if not path.is_file():
        return []
    with path.open() as f:
        return [{k: float(v) if v not in ('', None) else math.nan for k, v in row.items()}
                for row in csv.DictReader(f)]


def plot_learning_curve(rows: list[dict[str, float]], path: Path, title: str) -> None:
    """Episode return (and success rate, when there is one) against environment steps."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    has_success = any(math.isfinite(r['rollout/success_rate']) for r in rows)
    fig, axes = plt.subplots(1, 2 if has_success else 1, figsize=(10 if has_success else 6, 4),
                             squeeze=False)
    _panel(axes[0][0], rows, 'return_mean', 'ep_return_mean', 'episode return')
    if has_success:
        _panel(axes[0][1], rows, 'success_rate', 'success_rate', 'success rate')
        axes[0][1].set_ylim(-0.05, 1.05)
    fig.suptitle(title)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format='png', dpi=90)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())


def _panel(ax, rows: list[dict[str, float]], eval_key: str, rollout_key: str,  # noqa: ANN001
           ylabel: str) -> None:
    """Training-episode curve plus the deterministic evaluations of one quantity."""
    ax.plot([r['env_steps'] for r in rows], [r[f'rollout/{rollout_key}'] for r in rows],
            label='training episodes')
    evals = [(r['env_steps'], r[f'eval/{eval_key}']) for r in rows
             if math.isfinite(r[f'eval/{eval_key}'])]
    if evals:
        ax.plot(*zip(*evals), 'o-', label='deterministic evaluation')
    ax.set_xlabel('environment steps')
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend()
