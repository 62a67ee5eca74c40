import pytest
import torch

from lifelong.meta.benchmark import CLASSIFICATION, REGRESSION, MetaBenchmark, Task
from lifelong.meta.evaluation import StreamResult, run_stream


def test_accuracy_forgetting_by_hand():
    # rows: before any task, then after tasks 1, 2, 3. Best earlier: task 1 -> 0.9, task 2 -> 0.8;
    # final 0.5, 0.6 -> forgetting ((0.4) + (0.2)) / 2; final accuracy (0.5 + 0.6 + 1) / 3
    m = torch.tensor([[0.1, 0.2, 0.3], [0.9, 0.0, 0.0], [0.7, 0.8, 0.0], [0.5, 0.6, 1.0]],
                     dtype=torch.float64)
    r = StreamResult("accuracy", True, m)
    assert r.final == pytest.approx(0.7)
    assert r.forgetting == pytest.approx(0.3)
    d = r.to_dict()
    assert d["matrix"][1] == [0.9, 0.0, 0.0] and d["forgetting"] == pytest.approx(0.3)


def test_mse_forgetting_flips_the_sign():
    # best (lowest) earlier: task 1 -> 0.1, task 2 -> 0.3; final 0.4, 0.2 -> ((0.3) + (-0.1)) / 2
    m = torch.tensor([[9.0, 9.0, 9.0], [0.1, 9.0, 9.0], [0.2, 0.3, 9.0], [0.4, 0.2, 0.0]],
                     dtype=torch.float64)
    r = StreamResult("mse", False, m)
    assert r.final == pytest.approx(0.2)
    assert r.forgetting == pytest.approx(0.1)
    assert StreamResult("mse", False, m[:2, :1]).forgetting == 0.0


class _Memorizer:
    """Predicts, for each input value, the last label it observed (a lookup table)."""

    def __init__(self, n_out):
        self.table = torch.zeros(10, n_out)

    def observe(self, x, y):
        self.table[x.long().flatten()] = torch.nn.functional.one_hot(y, self.table.shape[1]).float()

    def predict(self, x):
        return self.table[x.long().flatten()]


def _task(value, label):
    x = torch.full((3, 1), float(value))
    y = torch.full((3,), label, dtype=torch.long)
    return Task(x, y, x, y)


def test_run_stream_scores_seen_tasks_after_each_task():
    # task 2 overwrites input 0 with label 2: task 0's accuracy drops from 1 to 0
    tasks = (_task(0, 0), _task(1, 1), _task(0, 2))
    bench = MetaBenchmark("toy", CLASSIFICATION, (1,), 3, lambda g, n: None, torch.zeros(1),
                          torch.zeros(1), tasks, online_lr=0.1)
    r = run_stream(_Memorizer(3), bench)
    # before anything every score ties and no class is seen: each task is right with probability 1/3
    # (argmax's class 0 made task 0 look learned, at 1.0, before any training)
    torch.testing.assert_close(r.matrix, torch.tensor([[1 / 3] * 3, [1, 0, 0], [1, 1, 0], [0, 1, 1]],
                                                      dtype=torch.float64))
    assert r.forgetting == pytest.approx(0.5)


def test_accuracy_is_over_the_classes_seen_so_far():
    # after task 0 only class 0 is seen: the unseen class 1's larger score is ignored
    class Biased:
        def observe(self, x, y):
            pass

        def predict(self, x):
            return torch.tensor([[0.0, 5.0]]).expand(len(x), 2)

    bench = MetaBenchmark("toy", CLASSIFICATION, (1,), 2, lambda g, n: None, torch.zeros(1),
                          torch.zeros(1), (_task(0, 0), _task(1, 1)), online_lr=0.1)
    r = run_stream(Biased(), bench)
    assert r.matrix[1].tolist() == [1, 0] and r.matrix[2].tolist() == [0, 1]


def test_regression_metric_is_mse():
    x = torch.zeros(2, 1)
    task = Task(x, torch.zeros(2, 1), x, torch.tensor([[1.0], [3.0]]))

    class Zero:
        def observe(self, x, y):
            pass

        def predict(self, x):
            return torch.zeros(len(x), 1)

    bench = MetaBenchmark("toy", REGRESSION, (1,), 1, lambda g, n: None, x, x, (task,),
                          online_lr=0.1)
    assert run_stream(Zero(), bench).final == pytest.approx(5.0)
